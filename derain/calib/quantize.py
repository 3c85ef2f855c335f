"""INT8 explicit quantization (Q/DQ) for a strongly typed TensorRT build, with ONNX Runtime's
quantize_static, as TensorRT's explicit-quantization guide asks ("use explicit quantization with
strong typing"): the Q/DQ graph's unquantized part is FP16, except what the precision policy keeps
FP32 (export/precision.py), so the engine's precision is all in the graph. Q/DQ with FP16 scales
need opset 19 (TensorRT 10.3 parses up to 20): the quantized graph is converted to it.

Symmetric INT8 (zero points 0, as TensorRT requires), per-channel weights, activation ranges at
the 99.99th percentile of calib.npz (MinMax let rare outliers set the scale). Placed as TensorRT
fuses them: Q/DQ on the inputs of Conv, Gemm and of the MatMuls with a weight, where INT8 pays,
none on their outputs (OpTypesToExcludeOutputQuantization), so a residual Add reads a quantized
skip and a float Conv output, which TensorRT folds into the Conv. Left in float: what
the precision policy keeps FP32 (export/precision.py: LayerNorm, Softmax, the NAB sort and position
maps), the attention's activation-by-activation MatMuls (q.k^T, attn.v: quantizing them cost 0.109
dB instead of 0.064 dB on benchmarks/int8.py), and the two image-facing convolutions (3 channels in,
3 out: little for INT8 to speed up, and the last one writes the residual added to the image).
Both chosen on train pairs, never test ones: benchmarks/int8_calibration.py."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import DerainError
from ..export.names import INPUT_NAME
from ..export.fp16 import fp16_model
from ..export.manifest import describe, read_manifest, write_manifest
from ..export.precision import name_nodes

QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
QDQ_OPSET = 19  # the first whose QuantizeLinear / DequantizeLinear take FP16


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """quantize_static logs two "consider pre-processing" warnings on the root logger (not for us:
    onnxsim already simplified the graph) and its histogram calibrators print progress to stdout;
    either would break the one-line output contract."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


PERCENTILE = 99.99


def quantize_onnx(source: str | Path, calibration: np.ndarray, target: str | Path, percentile: float | None = PERCENTILE,
                  float_image_convs: bool = True, output_qdq: bool = False) -> Path:
    """`source` FP32 ONNX -> INT8 Q/DQ ONNX at `target`. percentile=None calibrates MinMax;
    output_qdq=True also quantizes the outputs of Conv/Gemm/MatMul (the placement before TensorRT's
    guidance was followed); benchmarks/int8_calibration.py and int8.py measure the choices."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Frames(CalibrationDataReader):
        """One frame at a time; `set_range` is how ONNX Runtime walks them in strides."""

        def __init__(self) -> None:
            self.set_range(0, len(calibration))

        def __len__(self) -> int:
            return len(calibration)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.batches = iter(calibration[i : i + 1] for i in range(start_index, min(end_index, len(calibration))))

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    try:
        model = onnx.load(str(source))  # quantize_static moves its weights elsewhere: one load per call
    except Exception as error:  # protobuf's DecodeError and friends
        raise DerainError(f"{source}: not an ONNX model ({type(error).__name__})") from error
    name_nodes(model)  # exclusion works by node name
    try:
        origin = read_manifest(source) or describe(model, "fp32", "unknown", None)
    except DerainError as error:  # a dynamic height or width: the counting sort is sized by them
        raise DerainError(f"{source}: {error}") from None
    expected = list(origin.input["shape"][1:])
    if list(calibration.shape[1:]) != expected:
        raise DerainError(f"{source}: takes frames of {'x'.join(map(str, expected))}, the calibration frames are "
                          f"{'x'.join(map(str, calibration.shape[1:]))} (derain calib --height/--width)")
    keep_fp32 = set(origin.fp32_nodes)
    weights = {initializer.name for initializer in model.graph.initializer}
    activation_matmuls = {node.name for node in model.graph.node
                          if node.op_type == "MatMul" and not any(name in weights for name in node.input)}
    convs = [node.name for node in model.graph.node if node.op_type == "Conv"]  # topological order
    image_facing = {convs[0], convs[-1]} if convs and float_image_convs else set()
    with atomic_path(target) as tmp:
        with _quiet_quantizer():
            quantize_static(
                model, str(tmp), Frames(), quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QUANTIZED_OPS),
                per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=sorted(keep_fp32 | activation_matmuls | image_facing),
                calibrate_method=CalibrationMethod.MinMax if percentile is None else CalibrationMethod.Percentile,
                extra_options={
                    "CalibPercentile": percentile or PERCENTILE,
                    # Histograms merged frame by frame: without a stride ONNX Runtime keeps every
                    # activation of every frame (60 frames of 720p took 19 GB and were killed).
                    "CalibStridedMinMax": 1,
                    "ActivationSymmetric": True,
                    "WeightSymmetric": True,
                    "QuantizeBias": False,  # INT32 bias DequantizeLinear is not a TensorRT input type
                    # TensorRT fuses Q/DQ into the op that reads them; a Q/DQ on a Conv's output is one
                    # more rounding, and one more kernel where the next op is not quantized.
                    "OpTypesToExcludeOutputQuantization": [] if output_qdq else list(QUANTIZED_OPS),
                },
            )
        quantized = version_converter.convert_version(onnx.load(str(tmp)), QDQ_OPSET)
        quantized = fp16_model(quantized, keep_fp32)
        onnx.checker.check_model(quantized)
        onnx.save(quantized, str(tmp))
    calib_hash = hashlib.sha256(np.ascontiguousarray(calibration).tobytes()).hexdigest()
    write_manifest(target, replace(origin, precision="int8", source=str(source), opset=QDQ_OPSET,
                                   extra={**origin.extra, "calibration_frames": len(calibration),
                                          "calibration_sha256": calib_hash}))
    return Path(target)
