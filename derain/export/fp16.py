"""FP16 ONNX for strongly typed TensorRT (precision comes from the graph's types: TensorRT 11 has
no FP16 builder flag, and 10.12 deprecated it). Weights and activations go to FP16, except the
nodes that the precision policy (export/precision.py) keeps in FP32.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..atomic import atomic_path
from .graph import constant_values, node_maps
from .manifest import describe, read_manifest, write_manifest
from .precision import name_nodes, normalization_nodes


def _skip_fp16_round_trips(model, fp32_nodes: set[str]) -> None:  # noqa: ANN001
    """The converters cast every blocked node's output to FP16 and back, even when the next node is
    blocked too: an FP32 island would still round through FP16 at each step (counts above 2048
    break). Where Cast(FP32) reads Cast(FP16) of a blocked node's output, read the output itself."""
    from onnx import TensorProto, helper

    graph = model.graph
    producer, _ = node_maps(model)

    def cast_to(node, dtype: int) -> bool:  # noqa: ANN001
        return node is not None and node.op_type == "Cast" and helper.get_attribute_value(node.attribute[0]) == dtype

    replace = {}
    for node in graph.node:
        to_fp16 = producer.get(node.input[0]) if cast_to(node, TensorProto.FLOAT) else None
        if cast_to(to_fp16, TensorProto.FLOAT16):
            source = producer.get(to_fp16.input[0])
            if source is not None and source.name in fp32_nodes:
                replace[node.output[0]] = to_fp16.input[0]
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in replace:
                node.input[i] = replace[name]
    # Drop the Casts nobody reads any more.
    while True:
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type == "Cast" and not any(o in used for o in n.output)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


def _restore_fp32_constants(model, original: dict) -> None:  # noqa: ANN001
    """The converter turns a constant into FP16 even where only FP32 nodes read it, then casts it
    back: a value past 65504 (the rain mask's pixel count at 720p) comes back clamped. Where a Cast
    to FP32 reads such a constant, read the original FP32 values instead."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    now = constant_values(model)
    for node in list(model.graph.node):
        name = node.input[0] if node.op_type == "Cast" else None
        if (name in now and now[name].dtype == np.float16 and name in original and original[name].dtype == np.float32
                and helper.get_attribute_value(node.attribute[0]) == TensorProto.FLOAT):
            model.graph.initializer.append(numpy_helper.from_array(original[name], node.output[0]))
            model.graph.node.remove(node)
    used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    for init in [init for init in model.graph.initializer if init.name not in used]:
        model.graph.initializer.remove(init)
    for node in [n for n in model.graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        model.graph.node.remove(node)


def fp16_model(model, keep_fp32: set[str]):  # noqa: ANN001, ANN201 - onnx.ModelProto in and out
    """`model` with FP16 weights and activations except the nodes in `keep_fp32`; FP32 inputs and
    outputs. Q/DQ nodes take FP16 scales (opset 19+), so an INT8 graph's float part is FP16 too."""
    from onnxruntime.transformers import float16  # casts only where FP16 meets FP32
    from onnxruntime.transformers.onnx_model import OnnxModel

    model.graph.ClearField("value_info")  # stale FP32 types would contradict the converted nodes
    original = constant_values(model)
    # Min and Max pick one of their inputs, exact in FP16, and ONNX Runtime's CPU and TensorRT run them
    # in FP16; the converter's default list keeps them FP32 (the rain mask's Min: 24 MB of Casts at 720p).
    exact_in_fp16 = ("Min", "Max")
    converted = float16.convert_float_to_float16(
        model, keep_io_types=True, node_block_list=sorted(keep_fp32),
        op_block_list=[op for op in float16.DEFAULT_OP_BLOCK_LIST if op not in exact_in_fp16])
    _skip_fp16_round_trips(converted, keep_fp32)
    _restore_fp32_constants(converted, original)
    OnnxModel(converted).topological_sort()  # the converter appends its Casts at the end
    return converted


def convert_to_fp16(source: str | Path, target: str | Path, fp32_normalization: bool = False) -> Path:
    """`source` FP32 ONNX -> FP16 ONNX at `target`; `fp32_normalization` also keeps LayerNorm and
    Softmax FP32 (export/precision.py says why they are FP16 by default)."""
    import onnx

    model = onnx.load(str(source))
    name_nodes(model)
    origin = read_manifest(source) or describe(model, "fp32", "unknown", None)
    keep = set(origin.fp32_nodes) | (normalization_nodes(model) if fp32_normalization else set())
    converted = fp16_model(model, keep)
    onnx.checker.check_model(converted)
    with atomic_path(target) as tmp:
        onnx.save(converted, str(tmp))
    write_manifest(target, replace(origin, precision="fp16", source=str(source), fp32_nodes=sorted(keep)))
    return Path(target)
