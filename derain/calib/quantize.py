"""INT8 explicit quantization (Q/DQ) for a strongly typed TensorRT build, with ONNX Runtime's
quantize_static, as TensorRT's explicit-quantization guide asks ("use explicit quantization with
strong typing"): the Q/DQ graph's unquantized part is FP16, except what the precision policy keeps
FP32 (export/precision.py), so the engine's precision is all in the graph. Q/DQ with FP16 scales
need opset 19 (TensorRT 10.3 parses up to 20): an older graph is converted to it.

Symmetric INT8 (zero points 0, as TensorRT requires), per-channel weights, activation ranges at
the 99.99th percentile (MinMax let rare outliers set the scale) of the reference frames that ship
with the package, widened, never narrowed, by the user's calib.npz (calib/ranges.py: calibrated on
light rain alone, INT8 stopped deraining heavy rain). Placed as TensorRT
fuses them: Q/DQ on the inputs of Conv, ConvTranspose, Gemm and of the MatMuls with a weight initializer
(the q projections' weights are Constant nodes after onnxsim, so they stay float), where INT8 pays,
none on their outputs (OpTypesToExcludeOutputQuantization), so a residual Add reads a quantized
skip and a float Conv output, which TensorRT folds into the Conv. Left in float: what
the precision policy keeps FP32 (export/precision.py: the NAB sort and position maps), the
attention's activation-by-activation MatMuls (q.k^T, attn.v: quantizing them cost 0.109 dB instead
of 0.064 dB on benchmarks/int8.py) and the image-facing convolutions (3 channels in or out: little
for INT8 to speed up, and the head writes the residual added to the image). Chosen on train pairs,
never test ones: benchmarks/int8_calibration.py. (The decoder's fuse convolutions, which read an
encoder skip and the upsampled features concatenated, stayed FP16 until the export folded them
into the upsampling and a conv of the skip, each quantized with its own range; their choice,
benchmarks/int8_choice.py, is in the history at commit 986973c.)"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import DerainError
from ..export.names import INPUT_NAME
from ..export.fp16 import fp16_model
from ..export.graph import constant_values, opset_version, read_onnx
from ..export.manifest import describe, read_manifest, write_manifest
from ..export.precision import name_nodes
from .ranges import PERCENTILE, Ranges, activation_ranges, default_ranges, quiet_quantizer, reference_frames

QUANTIZED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
QDQ_OPSET = 19  # the first whose QuantizeLinear / DequantizeLinear take FP16


def quantize_onnx(source: str | Path, calibration: np.ndarray | None, target: str | Path,
                  percentile: float = PERCENTILE, reference: bool = True, float_image_convs: bool = True,
                  output_qdq: bool = False) -> Path:
    """`source` FP32 ONNX -> INT8 Q/DQ ONNX at `target`. Ranges: the shipped reference frames'
    (reference=True), widened by `calibration`'s frames where given; reference=False takes the
    calibration's alone (narrowed to its content: for measuring, not for engines). percentile=100
    is MinMax. output_qdq=True also quantizes the outputs of Conv/Gemm/MatMul (the placement before
    TensorRT's guidance was followed); benchmarks/int8_calibration.py and int8.py measure the choices."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if calibration is None and not reference:
        raise DerainError("--calib-only needs --calib (the frames to take the ranges from)")
    model = read_onnx(source)  # quantize_static moves its weights elsewhere: one load per call
    name_nodes(model)  # exclusion works by node name
    try:
        origin = read_manifest(source) or describe(model, "fp32", "unknown", None)
    except DerainError as error:  # a dynamic height or width: the counting sort is sized by them
        raise DerainError(f"{source}: {error}") from None
    expected = list(origin.input["shape"][1:])
    if calibration is not None and list(calibration.shape[1:]) != expected:
        raise DerainError(f"{source}: takes frames of {'x'.join(map(str, expected))}, the calibration frames are "
                          f"{'x'.join(map(str, calibration.shape[1:]))} (derain calib --height/--width)")
    _, height, width = expected
    ranges, frames_used = ranges_for(source, (height, width), calibration, reference, percentile)
    first = calibration[:1] if calibration is not None else reference_frames(height, width)[:1]

    class OneFrame(CalibrationDataReader):
        """quantize_static insists on calibrating: one frame, whose ranges the overrides replace."""

        def __init__(self) -> None:
            self.feeds = iter([{INPUT_NAME: first}])

        def get_next(self) -> dict | None:
            return next(self.feeds, None)

    keep_fp32 = set(origin.fp32_nodes)
    weights = {initializer.name for initializer in model.graph.initializer}
    activation_matmuls = {node.name for node in model.graph.node
                          if node.op_type == "MatMul" and not any(name in weights for name in node.input)}
    image_facing = image_convs(model) if float_image_convs else set()
    with atomic_path(target) as tmp:
        with quiet_quantizer():
            quantize_static(
                model, str(tmp), OneFrame(), quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QUANTIZED_OPS),
                per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=sorted(keep_fp32 | activation_matmuls | image_facing),
                extra_options={
                    "TensorQuantOverrides": {name: [{"rmin": np.float32(-value), "rmax": np.float32(value)}]
                                             for name, value in ranges.items()},
                    "ActivationSymmetric": True,
                    "WeightSymmetric": True,
                    "QuantizeBias": False,  # INT32 bias DequantizeLinear is not a TensorRT input type
                    # TensorRT fuses Q/DQ into the op that reads them; a Q/DQ on a Conv's output is one
                    # more rounding, and one more kernel where the next op is not quantized.
                    "OpTypesToExcludeOutputQuantization": [] if output_qdq else list(QUANTIZED_OPS),
                },
            )
        quantized = onnx.load(str(tmp))
        if opset_version(quantized) < QDQ_OPSET:
            quantized = version_converter.convert_version(quantized, QDQ_OPSET)
            quantized.ir_version = max(quantized.ir_version, 9)  # opset 19's IR; the converter leaves 8
        quantized = fp16_model(quantized, keep_fp32)
        onnx.checker.check_model(quantized)
        onnx.save(quantized, str(tmp))
    calibration_info = {"ranges": frames_used, "percentile": percentile}
    if calibration is not None:
        calibration_info.update(calibration_frames=len(calibration),
                                calibration_sha256=hashlib.sha256(np.ascontiguousarray(calibration).tobytes()).hexdigest())
    write_manifest(target, replace(origin, precision="int8", source=str(source), opset=opset_version(quantized),
                                   extra={**origin.extra, **calibration_info}))
    return Path(target)


def image_convs(model) -> set[str]:  # noqa: ANN001 - onnx.ModelProto
    """The convolutions that read or write the 3 channels of an image (the stem, and the composed
    output convs: the 5x5 of the image and the transposed conv from half resolution): found by their
    weights' shape, so that no rewrite of the graph's order or names can move the choice."""
    weights = {name: value.shape for name, value in constant_values(model).items()}  # initializers and Constants
    return {node.name for node in model.graph.node if node.op_type in ("Conv", "ConvTranspose")
            and node.input[1] in weights and 3 in weights[node.input[1]][:2]}


def ranges_for(source: str | Path, size: tuple[int, int], calibration: np.ndarray | None, reference: bool,
               percentile: float) -> tuple[Ranges, str]:
    """The activation ranges quantize_onnx uses, and a line saying which frames made them."""
    if reference:
        return default_ranges(source, size, calibration, QUANTIZED_OPS, percentile)
    assert calibration is not None
    return (activation_ranges(source, calibration, QUANTIZED_OPS, percentile, "calibration"),
            f"calibration ({len(calibration)} frames) alone")


def int8_mac_share(path: str | Path) -> float:
    """The share of the model's multiply-accumulates (QUANTIZED_OPS) whose inputs are all
    INT8 (each read through a DequantizeLinear): what INT8 can speed up. The rest runs FP16/FP32."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*model.graph.value_info, *model.graph.input, *model.graph.output)}
    shapes |= {t.name: list(t.dims) for t in model.graph.initializer}
    producers = {output: node.op_type for node in model.graph.node for output in node.output}
    total = int8 = 0
    for node in model.graph.node:
        if node.op_type not in QUANTIZED_OPS:
            continue
        out = shapes.get(node.output[0])
        if not out or 0 in out:
            continue
        if node.op_type == "Conv":  # per output element: input channels per group x kernel area
            macs = int(np.prod(out)) * int(np.prod(shapes[node.input[1]][1:]))
        elif node.op_type == "ConvTranspose":  # per input element: output channels per group x kernel area
            macs = int(np.prod(shapes[node.input[0]])) * int(np.prod(shapes[node.input[1]][1:]))
        else:  # MatMul / Gemm: per output element, the shared dimension
            first = shapes[node.input[0]]
            transposed = any(a.name == "transA" and a.i for a in node.attribute)
            macs = int(np.prod(out)) * first[-2 if transposed else -1]
        total += macs
        if all(producers.get(name) == "DequantizeLinear" for name in node.input[:2]):
            int8 += macs
    return int8 / total if total else 0.0
