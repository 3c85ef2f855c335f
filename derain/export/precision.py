"""The precision policy: which ONNX nodes stay FP32. Decided here once, and used by the FP16
conversion (export/fp16.py), the INT8 quantizer (calib/quantize.py) and the TensorRT 10 builder
(engines/build.py), so the three can never disagree.

FP32 are:
- index arithmetic, in two kinds:
  - the NAB's sort: every node that computes an index input of a Gather, GatherElements or
    ScatterElements (or the positions a ScatterElements writes), back to the features it starts
    from. FP16 counts are exact only to 2048, and an FP16 similarity would move near-tied pixels to
    another cluster, hence another chunk;
  - position maps: what is computed from runtime_ones (Equal(x, x), see model/ops.py) alone, e.g.
    the shifted windows' region masks: FP16 running counts break past 2048 pixels;
- full-image reductions (a Reduce* over at least LARGE_REDUCTION elements per output, e.g. the
  rain mask's mean and variance over ~1M pixels at 720p): TensorRT documents no accumulation type
  for an FP16 reduction, and an FP16 sum of 2**16 values of ~0.5 is past FP16's largest number;
  and what is computed from their results before it meets a full-size tensor again: the unbiased
  variance multiplies by n = 983,040 and divides by n - 1 at 720p, constants that FP16 clamped to
  65504 (the third TensorRT review's E6; `derain lint` flags any such clamped constant).

LayerNormalization and Softmax take and give FP16 and compute inside in FP32: LayerNormalization's
stash_type (default 1: FP32), which TensorRT's parser passes to INormalizationLayer's compute
precision (FP32 by default "even in mixed precision mode"); softmax subtracts the row maximum
before the exponent (ONNX Runtime's kernel does; TensorRT's FP16 softmax is for a device to
confirm). As FP32 islands they cost two Casts each: 0.69 GB per 720p frame of `realtime`, 14% of
its FP16 traffic. normalization_nodes() names them for a build that
wants them FP32 anyway (`derain export --fp16 --fp32-normalization`), to compare on a device.
"""

from __future__ import annotations

import numpy as np

from .graph import constant_names, node_maps

NORMALIZATION_OPS = ("LayerNormalization", "Softmax")
REDUCE_OPS = ("ReduceMean", "ReduceSum", "ReduceL2", "ReduceL1", "ReduceSumSquare", "ReduceLogSumExp")
LARGE_REDUCTION = 2**16
# Inputs that carry indices (or, for ScatterElements, the integers it writes).
INDEX_INPUTS = {"Gather": (1,), "GatherElements": (1,), "ScatterElements": (1, 2)}


def sort_nodes(model) -> set[str]:  # noqa: ANN001
    """Names of the nodes that compute indices: every ancestor of an index input that feeds nothing
    but index computation (the walk stops where a tensor also feeds the main path)."""
    producer, consumers = node_maps(model)
    roots = [node for node in model.graph.node if node.op_type in INDEX_INPUTS]
    stack = [node.input[i] for node in roots for i in INDEX_INPUTS[node.op_type] if i < len(node.input)]
    index_users = {id(node) for node in roots}
    selected: set[str] = set()
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in selected:
            continue
        users = [user for output in node.output for user in consumers.get(output, [])]
        if not all(user.name in selected or id(user) in index_users for user in users):
            continue
        selected.add(node.name)
        stack.extend(node.input)
    return selected


def position_map_nodes(model) -> set[str]:  # noqa: ANN001
    """Names of the nodes computed from Equal(x, x) maps and constants alone."""
    constants = constant_names(model)
    derived: set[str] = set()  # tensor names
    selected: set[str] = set()
    for node in model.graph.node:  # topological order
        inputs = [name for name in node.input if name]
        seed = node.op_type == "Equal" and len(inputs) == 2 and inputs[0] == inputs[1]
        if seed or (any(n in derived for n in inputs) and all(n in derived or n in constants for n in inputs)):
            selected.add(node.name)
            derived.update(node.output)
    return selected


def large_reduction_nodes(model) -> set[str]:  # noqa: ANN001
    """Names of the Reduce* nodes that sum LARGE_REDUCTION or more elements into each output, and of
    the nodes that compute on their results while no output is larger than the reduction's."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    sizes = {}
    for value in values:
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            sizes[value.name] = int(np.prod([d.dim_value for d in dims]))
    reductions = [node for node in model.graph.node if node.op_type in REDUCE_OPS
                  and node.input[0] in sizes and node.output[0] in sizes
                  and sizes[node.input[0]] >= LARGE_REDUCTION * sizes[node.output[0]]]
    _, consumers = node_maps(model)
    selected = {node.name for node in reductions}
    frontier = [(node.output[0], sizes[node.output[0]]) for node in reductions]
    while frontier:
        name, limit = frontier.pop()
        for user in consumers.get(name, []):
            if user.name not in selected and all(sizes.get(out, limit + 1) <= limit for out in user.output):
                selected.add(user.name)
                frontier.extend((out, limit) for out in user.output)
    return selected


def name_nodes(model) -> None:  # noqa: ANN001
    """Give every node a name: the converters and the quantizer select nodes by name."""
    for index, node in enumerate(model.graph.node):
        node.name = node.name or f"{node.op_type}_{index}"


def normalization_nodes(model) -> set[str]:  # noqa: ANN001
    """Names of the LayerNormalization and Softmax nodes."""
    return {node.name for node in model.graph.node if node.op_type in NORMALIZATION_OPS}


def fp32_nodes(model) -> set[str]:  # noqa: ANN001
    """The names of every node that must stay FP32 (the nodes must be named: name_nodes)."""
    return sort_nodes(model) | position_map_nodes(model) | large_reduction_nodes(model)
