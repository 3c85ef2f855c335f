"""The INT8 check `derain deploy` runs before it builds an engine: the PSNR the INT8 model loses
against FP32 on each group of the reference pairs that ship with the package (calib/reference/:
heavy and light synthetic rain, real rain; train splits only), at the model's own resolution.
It runs on ONNX Runtime, so it runs (and is tested) where TensorRT is absent."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..calib.ranges import reference_groups
from ..data.pairs import load_pairs
from ..errors import DerainError
from ..export.manifest import read_manifest, write_manifest
from .report import validate


def reference_losses(fp32: Path, int8: Path) -> dict[str, float]:
    """Group name -> mean Y-PSNR the INT8 model loses against FP32 on that group's pairs."""
    losses = {}
    for group, folder in reference_groups().items():
        report, _ = validate({"fp32": fp32, "int8": int8}, load_pairs(folder), max_loss_db=float("inf"),
                             data=f"reference/{group}")
        losses[group] = report.precisions["int8"]["loss_db"]
    return losses


def check_int8(fp32: Path, int8: Path, max_loss_db: float, force: bool = False) -> dict[str, float]:
    """The losses, printed in one line and written into the INT8 model's manifest beside the ranges
    it was made with; a DerainError naming the worst group unless it is within the bound or `force`
    says to go on."""
    losses = reference_losses(fp32, int8)
    manifest = read_manifest(int8)
    if manifest is not None:  # the model's own record: which frames made its ranges, what it lost
        print(f"INT8 ranges of {int8.name}: {manifest.extra.get('ranges', 'unknown')}")
        write_manifest(int8, replace(manifest, extra={**manifest.extra, "reference_check": {
            "loss_db": losses, "max_loss_db": max_loss_db, "passed": max(losses.values()) <= max_loss_db}}))
    print("INT8 check on the reference pairs: " + ", ".join(f"{g} {loss:+.3f} dB" for g, loss in losses.items())
          + f" (bound {max_loss_db} dB)")
    group = max(losses, key=losses.get)
    if losses[group] > max_loss_db:
        line = (f"{int8}: INT8 loses {losses[group]:.2f} dB against FP32 on the reference pairs of "
                f"{group} rain (bound {max_loss_db} dB)")
        if not force:
            raise DerainError(line + "; --force builds it anyway")
        print(f"warning: {line}; building it anyway (--force)")
    return losses
