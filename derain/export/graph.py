"""Reading an ONNX graph (onnx.ModelProto): who produces and who reads each tensor, the values of its
constants, its opset; and reading the file itself. Shared by the precision policy, the FP16 conversion, the lint, the traffic
count and the manifests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_onnx(path: str | Path):  # noqa: ANN201 - onnx.ModelProto, imported lazily
    """The ONNX model at `path`, or one line naming the file when it is missing or not ONNX
    (protobuf's DecodeError, or an empty model's IndexError, would otherwise reach the user as a
    traceback)."""
    import onnx

    from ..errors import DerainError

    if not Path(path).is_file():
        raise DerainError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path))
    except Exception as error:  # protobuf raises DecodeError and others
        raise DerainError(f"{path}: not an ONNX model ({type(error).__name__})") from error
    if not model.graph.input or not model.graph.node:  # protobuf reads some stray bytes as an empty model
        raise DerainError(f"{path}: not an ONNX model (no graph in it)")
    return model


def node_maps(model) -> tuple[dict, dict[str, list]]:  # noqa: ANN001
    """tensor name -> the node that writes it, and tensor name -> the nodes that read it."""
    producer = {output: node for node in model.graph.node for output in node.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return producer, consumers


def constant_names(model) -> set[str]:  # noqa: ANN001
    """The initializers' names and the Constant nodes' outputs: the tensors that are not activations."""
    names = {init.name for init in model.graph.initializer}
    return names | {out for node in model.graph.node if node.op_type == "Constant" for out in node.output}


def constant_values(model) -> dict[str, np.ndarray]:  # noqa: ANN001
    """name -> value of every initializer and Constant node output."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            value = next((a for a in node.attribute if a.name == "value"), None)
            if value is not None:
                values[node.output[0]] = numpy_helper.to_array(value.t)
    return values


def opset_version(model) -> int:  # noqa: ANN001
    """The default domain's opset (0 if the model names none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def sort_key_names(model) -> list[str]:  # noqa: ANN001 - onnx.ModelProto
    """The NAB sort-key tensors of an exported graph, in execution order. Each counting sort starts
    with the one-hot Cast(Equal(Unsqueeze(keys), range)), the range a constant."""
    producer, _ = node_maps(model)
    constants = constant_names(model)
    names = []
    for node in model.graph.node:
        equal = producer.get(node.input[0]) if node.op_type == "Cast" else None
        if equal is None or equal.op_type != "Equal" or equal.input[1] not in constants:
            continue
        unsqueeze = producer.get(equal.input[0])
        if unsqueeze is not None and unsqueeze.op_type == "Unsqueeze":
            names.append(unsqueeze.input[0])
    return names


def key_outputs_model(model, names: list[str]) -> bytes:  # noqa: ANN001
    """The serialized graph with `names` (the int64 sort keys) as extra outputs."""
    from onnx import TensorProto, helper

    copy = type(model)()
    copy.CopyFrom(model)
    copy.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.INT64, None) for name in names)
    return copy.SerializeToString()
