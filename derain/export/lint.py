"""TensorRT compatibility lint for an ONNX graph: unsupported ops and attributes, and known hazards,
for the TensorRT versions we deploy to. TensorRT cannot run on our CI machines, so this is our
early warning; each rule cites where it comes from.

Sources:
  [matrix]  onnx-tensorrt docs/operators.md, the ONNX operator support matrix of TensorRT 10.x
            (read at the 10.15 release; older releases noted where they differ).
  [matrix8] the same file at TensorRT 8.5 (stricter constant-input rules, kept for 10.3).
  [design]  this project's design notes (../shared/design/DESIGN.md, "TensorRT facts").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
TOPK_MAX_K = 3840  # [matrix] TopK: "K input must be less than 3840"
MAX_OPSET = {"10.3": 20}  # [matrix] "TensorRT 10.0 supports operators in the inclusive range of opset 9 to 20"
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
        from onnx import numpy_helper, shape_inference

        model = shape_inference.infer_shapes(model)
        self.model = model
        self.constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "Constant":
                value = next((a for a in node.attribute if a.name == "value"), None)
                if value is not None:
                    self.constants[node.output[0]] = numpy_helper.to_array(value.t)
        self.elem_type = {v.name: v.type.tensor_type.elem_type for v in
                          [*model.graph.value_info, *model.graph.input, *model.graph.output]}

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


def lint_model(model, targets: tuple[str, ...] = TARGETS) -> list[Finding]:  # noqa: ANN001
    graph = _Graph(model)
    findings: list[Finding] = []

    def add(level: str, rule: str, node: str, message: str, only: tuple[str, ...] = targets) -> None:
        hit = tuple(t for t in targets if t in only)
        if hit:
            findings.append(Finding(level, rule, node, message, hit))

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    for target, highest in MAX_OPSET.items():
        if opset > highest:
            add("error", "opset", "<model>", f"opset {opset} is above {highest}, the highest TensorRT {target} parses",
                (target,))
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") or d.dim_value <= 0 for d in dims):
            # [design] static shapes: no optimization profiles, and CUDA graphs can be captured.
            add("warning", "dynamic-shape", value.name, "input has dynamic dimensions; export at a static shape")

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
    return findings


def lint_file(path: str | Path, targets: tuple[str, ...] = TARGETS) -> list[Finding]:
    import onnx

    from ..errors import DerainError

    try:
        model = onnx.load(str(path))
    except Exception as error:  # protobuf raises DecodeError and others
        raise DerainError(f"{path}: not an ONNX model ({type(error).__name__})") from error
    return lint_model(model, targets)
