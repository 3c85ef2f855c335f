"""TensorRT compatibility lint for an ONNX graph: unsupported ops and attributes, and known hazards,
for the TensorRT versions we deploy to. TensorRT cannot run on our CI machines, so this is our
early warning; each rule cites where it comes from.

Sources:
  [matrix]  onnx-tensorrt docs/operators.md, the ONNX operator support matrix of TensorRT 10.x
            (read at the 10.15 release; older releases noted where they differ).
  [matrix8] the same file at TensorRT 8.5 (stricter constant-input rules, kept for 10.3).
  [design]  this project's design notes (docs/design.md, "TensorRT facts to design for").
  [review3] the third TensorRT review of this project (its findings are quoted where used).
  [import]  onnx-tensorrt's importers (onnxOpImporters.cpp, read at the 10.1-GA branch, the
            newest before JetPack 6's 10.3): the ops below are imported as an ILoopLayer that
            runs one step after another; NvInfer.h has ICumulativeLayer from release/10.8 on, and
            TensorRT's 10.8 changelog says "improved performance of CumSum operations".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .graph import constant_values, opset_version

TARGETS = ("10.3", "10.13", "11")  # JetPack 6, JetPack 7, desktop / JetPack 7.2.2+

# [matrix] operators marked N (not supported by the ONNX parser).
UNSUPPORTED_OPS = frozenset({
    "AffineGrid", "Bernoulli", "BitShift", "BitwiseAnd", "BitwiseNot", "BitwiseOr", "BitwiseXor", "Col2Im",
    "CenterCropPad", "Compress", "ConcatFromSequence", "ConvInteger", "DFT", "Det", "DynamicQuantizeLinear",
    "ImageDecoder", "MatMulInteger", "MaxRoiPool", "MaxUnpool", "MelWeightMatrix", "Multinomial",
    "NegativeLogLikelihoodLoss", "Optional", "OptionalGetElement", "OptionalHasElement", "QLinearConv",
    "QLinearMatMul", "RegexFullMatch", "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase",
    "SequenceInsert", "SequenceLength", "SequenceMap", "SoftmaxCrossEntropyLoss", "SplitToSequence",
    "StringConcat", "StringNormalizer", "StringSplit", "TfIdfVectorizer", "Unique",
})
FP16_MAX = 65504.0
TOPK_MAX_K = 3840  # [matrix] TopK: "K input must be less than 3840"
MAX_OPSET = {"10.3": 20}
# [import] ONNX ops that TensorRT runs as a sequential ILoopLayer, and the first release that does
# not (None: every release). CumSum: `loop->addTripLimit(axisLength, kCOUNT)`, one step per
# element; Loop and Scan: their trip count / scan axis; RNN, GRU, LSTM: one step per time step.
LOOP_OPS = {"CumSum": (10, 8), "Loop": None, "Scan": None, "RNN": None, "GRU": None, "LSTM": None}  # [matrix] "TensorRT 10.0 supports operators in the inclusive range of opset 9 to 20"
_INTEGER_TYPES = {6, 7}  # onnx.TensorProto.INT32, INT64


@dataclass(frozen=True)
class Finding:
    level: str  # "error" (the build fails or is wrong) | "warning" (a hazard) | "info"
    rule: str
    node: str
    message: str
    targets: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.level:7} {self.rule:22} [{', '.join(self.targets)}] {self.node}: {self.message}"


class _Graph:
    """Constants, value types and producers of one ONNX graph, for the rules below."""

    def __init__(self, model) -> None:  # noqa: ANN001 - onnx.ModelProto, imported lazily
        from onnx import shape_inference

        model = shape_inference.infer_shapes(model)
        self.model = model
        self.constants = constant_values(model)
        values = [*model.graph.value_info, *model.graph.input, *model.graph.output]
        self.elem_type = {v.name: v.type.tensor_type.elem_type for v in values}
        self.shape = {v.name: [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
                      for v in values if v.type.tensor_type.HasField("shape")}

    def constant(self, name: str) -> np.ndarray | None:
        return self.constants.get(name)

    def is_constant(self, name: str) -> bool:
        return name == "" or name in self.constants


def _attr(node, name: str, default=None):  # noqa: ANN001, ANN202
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _version(target: str) -> tuple[int, int]:
    major, _, minor = target.partition(".")
    return int(major), int(minor or 0)


def _loop_steps(node, graph: _Graph) -> int | None:  # noqa: ANN001
    """Sequential steps of one loop-making node per run (None: not known before run time)."""
    def dim(name: str, axis: int) -> int | None:
        shape = graph.shape.get(name)
        return shape[axis] if shape and -len(shape) <= axis < len(shape) and shape[axis] > 0 else None

    if node.op_type == "CumSum":
        axis = graph.constant(node.input[1])
        return None if axis is None else dim(node.input[0], int(np.ravel(axis)[0]))
    if node.op_type == "Loop":
        trips = graph.constant(node.input[0]) if node.input[0] else None
        return None if trips is None else int(np.ravel(trips)[0])
    if node.op_type == "Scan":  # inputs: the loop states, then num_scan_inputs sequences
        first_sequence = len(node.input) - _attr(node, "num_scan_inputs", 1)
        return dim(node.input[first_sequence], int((_attr(node, "scan_input_axes") or [0])[0]))
    return dim(node.input[0], 1 if _attr(node, "layout", 0) else 0)  # RNN, GRU, LSTM: X's sequence axis


def sequential_steps(model, target: str) -> dict[str, int | None]:  # noqa: ANN001
    """{node: sequential loop steps per inference} on TensorRT `target`; an empty dict is a graph
    TensorRT runs without loops."""
    graph = _Graph(model)
    steps = {}
    for node in model.graph.node:
        first_free = LOOP_OPS.get(node.op_type, ()) if node.domain in ("", "ai.onnx") else ()
        if first_free == () or first_free is not None and _version(target) >= first_free:
            continue
        steps[node.name or f"{node.op_type}:{node.output[0]}"] = _loop_steps(node, graph)
    return steps


def lint_model(model, targets: tuple[str, ...] = TARGETS) -> list[Finding]:  # noqa: ANN001
    graph = _Graph(model)
    findings: list[Finding] = []

    def add(level: str, rule: str, node: str, message: str, only: tuple[str, ...] = targets) -> None:
        hit = tuple(t for t in targets if t in only)
        if hit:
            findings.append(Finding(level, rule, node, message, hit))

    opset = opset_version(model)
    for target, highest in MAX_OPSET.items():
        if opset > highest:
            add("error", "opset", "<model>", f"opset {opset} is above {highest}, the highest TensorRT {target} parses",
                (target,))
    for value in model.graph.input:
        dynamic = [not d.HasField("dim_value") or d.dim_value <= 0 for d in value.type.tensor_type.shape.dim]
        if any(dynamic[1:]):
            # [design] static shapes: the NAB's counting sort and window maps are sized by H and W.
            add("warning", "dynamic-shape", value.name, "input has dynamic spatial dimensions; export at a static shape")
        elif dynamic[:1] == [True]:
            add("info", "dynamic-batch", value.name, "dynamic batch: the engine needs an optimization profile "
                "(derain build makes min 1 / opt N / max N); a CUDA graph is captured for one batch size")

    for target in targets:
        for name, steps in sequential_steps(model, target).items():
            # [import] a loop runs its steps one after another; real time has no room for that.
            count = "an unknown number of" if steps is None else f"{steps:,}"
            add("error", "sequential-loop", name, f"TensorRT {target} runs this as a loop of {count} sequential "
                "steps per inference (count with MatMuls, see model/ops.py prefix_sum)", (target,))
    for node in model.graph.node:
        name = node.name or f"{node.op_type}:{node.output[0]}"
        if node.domain not in ("", "ai.onnx"):
            add("warning", "custom-op", name, f"{node.domain}::{node.op_type} needs a TensorRT plugin of that name")
            continue
        if node.op_type in UNSUPPORTED_OPS:
            add("error", "unsupported-op", name, f"{node.op_type} is not supported by TensorRT's ONNX parser")
        elif node.op_type == "TopK":
            k = graph.constant(node.input[1]) if len(node.input) > 1 else None
            if k is None:
                add("error", "topk-k", name, "TopK's K must be a build-time constant")
            elif int(np.ravel(k)[0]) >= TOPK_MAX_K:
                add("error", "topk-k", name, f"TopK K={int(np.ravel(k)[0])}: TensorRT needs K < {TOPK_MAX_K} "
                    "(sort by counting instead)")
            if _attr(node, "sorted", 1) != 1:
                add("error", "topk-sorted", name, "TopK needs sorted=1")
        elif node.op_type == "NonZero":
            # [design] data-dependent output shape: needs an output allocator and blocks CUDA graphs.
            add("warning", "data-dependent-shape", name, "NonZero has a data-dependent output shape")
        elif node.op_type == "CumSum":
            if graph.elem_type.get(node.input[0]) in _INTEGER_TYPES:
                # [matrix] CumSum supports FP32, FP16, BF16 only.
                add("error", "cumsum-integer", name, "CumSum on integers is not supported; count in FP32")
            if not graph.is_constant(node.input[1]):
                add("error", "constant-axis", name, "CumSum's axis must be a build-time constant")  # [matrix]
        elif node.op_type in ("ScatterElements", "ScatterND") and _attr(node, "reduction", b"none") not in (
                b"none", "none"):
            # [matrix] ScatterND: "reduction other than none is not supported"; [design] ScatterElements too.
            add("error", "scatter-reduction", name, f"{node.op_type} with reduction is not supported")
        elif node.op_type == "Slice" and not all(graph.is_constant(i) for i in node.input[3:4]):
            # [matrix8] "axes must be an initializer"; the 10.15 matrix no longer says so.
            add("error", "constant-axis", name, "Slice's axes must be a build-time constant", ("10.3",))
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zero_point = graph.constant(node.input[2])
            if zero_point is None or np.any(zero_point != 0):
                # [matrix] "y_zero_point must be 0" / "x_zero_point must be zero": symmetric quantization.
                add("error", "qdq-zero-point", name, f"{node.op_type} needs a constant zero point of 0")
    for name, value in graph.constants.items():
        # The float16 converters clamp what FP16 cannot hold to 65504 without a word ([review3] E6).
        if value.dtype == np.float16 and np.any(np.abs(value) == np.float16(FP16_MAX)):
            add("warning", "fp16-clamped-constant", name, f"an FP16 constant of {FP16_MAX:g}: FP16's largest number, "
                "most likely clamped from a larger FP32 value; keep its consumers FP32 (export/precision.py)")
    return findings
