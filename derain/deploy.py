"""`derain deploy`: checkpoint -> ONNX -> (FP16 ONNX | Q/DQ ONNX, checked) -> TensorRT engine in
one step, as Ultralytics' `yolo export format=engine` does. Each step is the single-step command's
own code; the intermediate ONNX files (with their manifests) stay in `onnx_dir`. Everything before
the build runs on ONNX Runtime, so an INT8 model that loses too much is refused before TensorRT
is needed, and where TensorRT is absent the ONNX files are still written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .engines.build import BuildOptions, build_engine
from .errors import DerainError

INT8_MAX_LOSS_DB = 0.3  # per group of reference pairs (validate/reference.py)


@dataclass
class DeployOptions:
    height: int
    width: int
    precision: str = "fp16"
    calib: Path | None = None  # int8: a video or a folder of images that widen the reference ranges
    calib_frames: int = 64
    calib_only: bool = False  # int8 ranges from `calib` alone (narrowed to it)
    checkpoint: Path | None = None  # default: the bundled one
    onnx_dir: Path = Path("deploy")
    max_loss_db: float = INT8_MAX_LOSS_DB
    force: bool = False  # build an INT8 model that fails the check


def deploy(options: DeployOptions, build: BuildOptions) -> Path:
    if options.calib is not None and not options.calib.exists():
        raise DerainError(f"{options.calib}: no such calibration source")
    if options.calib_only and options.calib is None:
        raise DerainError("--calib-only needs --calib (the frames to take the ranges from)")
    if not options.max_loss_db >= 0:
        raise DerainError(f"--max-loss-db {options.max_loss_db}: a loss in dB, 0 or more")

    from .calib.frames import sample_frames
    from .calib.quantize import quantize_onnx
    from .export.fp16 import convert_to_fp16
    from .export.manifest import file_sha256
    from .export.onnx_export import export_onnx
    from .export.parity import check_parity, parity_inputs
    from .model import load_checkpoint
    from .model.checkpoint import bundled_checkpoint_path
    from .validate.reference import check_int8

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
        frames = None if options.calib is None else sample_frames(options.calib, options.calib_frames,
                                                                   options.height, options.width)
        source = quantize_onnx(fp32, frames, options.onnx_dir / f"{name}.int8.onnx",
                               reference=not options.calib_only)
        check_int8(fp32, source, options.max_loss_db, options.force)
    return build_engine(source, BuildOptions(**{**build.__dict__, "precision": options.precision, "name": name}))
