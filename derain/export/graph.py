"""Reading an ONNX graph (onnx.ModelProto): who produces and who reads each tensor, the values of its
constants, its opset. Shared by the precision policy, the FP16 conversion, the lint, the traffic
count and the manifests."""

from __future__ import annotations

import numpy as np


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
