"""`derain deploy`: checkpoint -> ONNX -> (FP16 ONNX | calibration + Q/DQ ONNX) -> TensorRT engine
in one step, as Ultralytics' `yolo export format=engine` does. Each step is the single-step
command's own code; the intermediate ONNX files (with their manifests) stay in `onnx_dir`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .engines.build import BuildOptions, build_engine
from .errors import DerainError


@dataclass
class DeployOptions:
    height: int
    width: int
    precision: str = "fp16"
    calib: Path | None = None  # a video or a folder of images (int8)
    calib_frames: int = 64
    checkpoint: Path | None = None  # default: the bundled one
    onnx_dir: Path = Path("deploy")


def deploy(options: DeployOptions, build: BuildOptions) -> Path:
    from .engines.device import current_device

    if options.precision == "int8" and options.calib is None:
        raise DerainError("--precision int8 needs --calib (a video or a folder of rainy frames to calibrate on)")
    if options.calib is not None and not options.calib.exists():
        raise DerainError(f"{options.calib}: no such calibration source")
    current_device()  # before minutes of export: a one-line error where TensorRT or the GPU is missing

    from .calib.frames import sample_frames
    from .calib.quantize import quantize_onnx
    from .export.fp16 import convert_to_fp16
    from .export.manifest import file_sha256
    from .export.onnx_export import export_onnx
    from .export.parity import check_parity, parity_inputs
    from .model import load_checkpoint
    from .model.checkpoint import bundled_checkpoint_path

    model, _ = load_checkpoint(options.checkpoint)
    checkpoint = options.checkpoint or bundled_checkpoint_path()
    name = build.name or f"{model.config.name}-{options.width}x{options.height}"
    fp32 = export_onnx(model, options.onnx_dir / f"{name}.onnx", options.height, options.width,
                       checkpoint_sha256=file_sha256(checkpoint))
    parity = check_parity(model, fp32, parity_inputs(1, options.height, options.width))
    print(parity.summary())
    if not parity.passed:
        raise DerainError(f"{fp32}: ONNX Runtime output differs from PyTorch beyond the tolerance")
    source = fp32
    if options.precision == "fp16":
        source = convert_to_fp16(fp32, options.onnx_dir / f"{name}.fp16.onnx")
    elif options.precision == "int8":
        frames = sample_frames(options.calib, options.calib_frames, options.height, options.width)
        source = quantize_onnx(fp32, frames, options.onnx_dir / f"{name}.int8.onnx")
    return build_engine(source, BuildOptions(**{**build.__dict__, "precision": options.precision, "name": name}))
