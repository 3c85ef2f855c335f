"""Activation traffic of an ONNX graph: the bytes one inference reads and writes in DRAM, counted op
by op as if nothing were fused. An upper bound of what an engine moves: TensorRT fuses pointwise
chains and folds layout ops, so a plan moves less, but how much less is up to fusions nothing here
can check. At 720p a Jetson is bound by memory as much as by arithmetic (an Orin NX has 102 GB/s:
30 FPS allows 3.4 GB per frame with no time left to compute), so this figure stands beside FLOPs.

How it counts:
- every op reads each activation input once and writes each output once, at the dtype the graph
  gives it (ONNX shape inference); weights (initializers, Constant outputs) are not counted;
- a Slice reads only the part it copies (as many elements as it writes), not its whole input;
- FREE_OPS only relabel memory (TensorRT and ONNX Runtime alias them): they move nothing;
- Q/DQ graphs (INT8): QuantizeLinear and DequantizeLinear are folded into the ops around them, as
  TensorRT fuses them: an op reading DequantizeLinear(x) reads x at 1 byte per element, and an
  output read only by QuantizeLinear is written at 1 byte per element.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .graph import constant_names, node_maps, read_onnx

FREE_OPS = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Constant", "Shape"})
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# DRAM bandwidth of the Jetsons the real-time goal is set for (datasheets, GB/s).
BANDWIDTH_GBPS = {"Orin NX 16GB": 102.4, "Orin Nano 8GB": 68.0}


@dataclass
class Traffic:
    """Bytes read plus written by one image's inference, in total and per op type (largest first)."""

    total_bytes: int
    by_op: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, int] = field(default_factory=dict)  # op type -> how many nodes
    qdq_folded: bool = False

    @property
    def gb(self) -> float:
        return self.total_bytes / 1e9

    def milliseconds(self) -> dict[str, float]:
        """Time to move it at each Jetson's full bandwidth, with no time left to compute."""
        return {device: self.total_bytes / (gbps * 1e9) * 1e3 for device, gbps in BANDWIDTH_GBPS.items()}

    def summary(self, top: int = 6) -> str:
        ms = ", ".join(f"{t:.0f} ms at {device}'s {BANDWIDTH_GBPS[device]:g} GB/s" for device, t in self.milliseconds().items())
        ops = ", ".join(f"{op} {b / 1e9:.2f}" for op, b in list(self.by_op.items())[:top])
        folded = "; Q/DQ folded, INT8 tensors at 1 byte" if self.qdq_folded else ""
        return (f"activation traffic {self.gb:.2f} GB per image (unfused upper bound; {', '.join(sorted(FREE_OPS))} "
                f"free{folded}): {ms}. Largest: {ops} GB")

    def to_dict(self) -> dict:
        return {"gb": round(self.gb, 4), "by_op_gb": {op: round(b / 1e9, 4) for op, b in self.by_op.items()},
                "nodes": self.nodes, "qdq_folded": self.qdq_folded,
                "ms_at_full_bandwidth": {device: round(t, 1) for device, t in self.milliseconds().items()}}


def onnx_traffic(path) -> Traffic:  # noqa: ANN001 - str or Path
    """The activation traffic of one image through the ONNX file at `path`: a dynamic batch is
    fixed to 1 first (onnxsim then folds the shape arithmetic it leaves)."""
    model = read_onnx(path)
    if any(not d.HasField("dim_value") for v in model.graph.input for d in v.type.tensor_type.shape.dim):
        import onnxsim

        from .names import SIMPLIFY_OPTIONS

        single = {v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim] for v in model.graph.input}
        model, _ = onnxsim.simplify(model, overwrite_input_shapes=single, **SIMPLIFY_OPTIONS)
    from ..errors import DerainError

    try:
        return activation_traffic(model)
    except ValueError as error:
        raise DerainError(f"{path}: {error} (activation traffic needs static shapes)") from None


def tensor_bytes(model) -> dict[str, int]:  # noqa: ANN001 - onnx.ModelProto, imported lazily
    """Bytes of every tensor of `model` whose shape and type shape inference can tell."""
    from onnx import helper, shape_inference

    inferred = shape_inference.infer_shapes(model, data_prop=True)
    sizes = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        tensor = value.type.tensor_type
        dims = tensor.shape.dim
        if tensor.elem_type and all(d.HasField("dim_value") for d in dims):
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).itemsize
            sizes[value.name] = int(np.prod([d.dim_value for d in dims], dtype=np.int64)) * itemsize
    return sizes


def activation_traffic(model) -> Traffic:  # noqa: ANN001
    """The activation traffic of `model` (onnx.ModelProto) with static shapes."""
    graph = model.graph
    sizes = tensor_bytes(model)
    weights = constant_names(model)
    producer, consumers = node_maps(model)
    qdq = any(node.op_type in QDQ_OPS for node in graph.node)

    def read(name: str) -> int:
        source = producer.get(name)
        if source is not None and source.op_type == "DequantizeLinear":
            name = source.input[0]  # the INT8 tensor itself, 1 byte per element
        return 0 if name in weights or not name else sizes[name]

    def written(name: str) -> int:
        users = consumers.get(name, [])
        if users and all(user.op_type == "QuantizeLinear" for user in users):
            return sizes[users[0].output[0]]  # the INT8 tensor the fused op writes
        return sizes[name]

    by_op: dict[str, int] = {}
    nodes: dict[str, int] = {}
    for node in graph.node:
        if node.op_type in FREE_OPS or node.op_type in QDQ_OPS:
            continue
        missing = [n for n in [*node.input, *node.output] if n and n not in weights and n not in sizes]
        if missing:
            raise ValueError(f"{node.name or node.op_type}: shape inference left {missing[0]!r} without a static shape")
        moved = sum(read(n) for n in node.input) + sum(written(n) for n in node.output if n)
        if node.op_type == "Slice":  # the data input is read only where the slice lies
            moved -= read(node.input[0]) - read(node.input[0]) * sizes[node.output[0]] // sizes[node.input[0]]
        by_op[node.op_type] = by_op.get(node.op_type, 0) + moved
        nodes[node.op_type] = nodes.get(node.op_type, 0) + 1
    by_op = dict(sorted(by_op.items(), key=lambda kv: -kv[1]))
    return Traffic(sum(by_op.values()), by_op, nodes, qdq_folded=qdq)

