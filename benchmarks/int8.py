"""PSNR of the bundled checkpoint at FP32, FP16 (estimated on CPU) and INT8 on the synthetic test
split; the INT8 target is a loss <= 0.3 dB (goal 0.1), reported whatever it is.

    python benchmarks/int8.py            # -> benchmarks/results/int8.json, benchmarks/results/int8/

FP16 is estimated by running the FP16 ONNX on ONNX Runtime's CPU kernels, which store every
tensor in FP16 and accumulate in FP32 inside MatMul/Conv, as TensorRT's FP16 tactics mostly do.
INT8 runs the Q/DQ ONNX on ONNX Runtime (INT8 kernels, or float simulation where it has none).
Calibration: synthetic rain over the *training* photos; scores: the held-out test photos."""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from derain.calib.quantize import quantize_onnx
from derain.data.datasets import PatchDataset, load_pairs
from derain.export.fp16 import convert_to_fp16
from derain.export.onnx_export import export_onnx
from derain.model import bundled_checkpoint_path, load_checkpoint
from derain.validate.report import validate, write_report

SIZE = 256  # centre crops of the test photos (the smallest is 300x451)
CALIBRATION_FRAMES = 32
TARGET_DB, GOAL_DB = 0.3, 0.1
RESULTS = Path(__file__).parent / "results"


def main() -> int:
    started = time.time()
    model, meta = load_checkpoint()
    calibration = np.stack([PatchDataset("synthetic", SIZE, CALIBRATION_FRAMES, seed=1)[i][0].numpy()
                            for i in range(CALIBRATION_FRAMES)])
    with tempfile.TemporaryDirectory() as folder:
        fp32 = export_onnx(model, Path(folder) / "edge.onnx", SIZE, SIZE)
        models = {"fp32": fp32, "fp16": convert_to_fp16(fp32, Path(folder) / "edge.fp16.onnx"),
                  "int8": quantize_onnx(fp32, calibration, Path(folder) / "edge.int8.onnx")}
        report, panels = validate(models, load_pairs("synthetic"), TARGET_DB, "synthetic (held-out photos)")
    write_report(report, panels, RESULTS / "int8")
    int8_loss = report.precisions["int8"]["loss_db"]
    result = {
        "command": "python benchmarks/int8.py",
        "checkpoint": bundled_checkpoint_path().name,
        "model": model.config.name,
        "input": [1, 3, SIZE, SIZE],
        "data": "synthetic rain over scikit-image's held-out photos (chelsea, rocket, camera), 3 draws each; "
                "centre crops",
        "calibration": f"{CALIBRATION_FRAMES} synthetic-rain patches of the training photos",
        "precisions": report.precisions,
        "int8_loss_db": int8_loss,
        "int8_target_db": TARGET_DB,
        "int8_goal_db": GOAL_DB,
        "int8_meets_target": int8_loss <= TARGET_DB,
        "int8_meets_goal": int8_loss <= GOAL_DB,
        "fp16_note": "estimated on ONNX Runtime CPU (FP16 tensors, FP32 accumulation); not a TensorRT run",
        "machine": {"cpu": platform.processor() or platform.machine(), "python": sys.version.split()[0],
                    "torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "seconds": round(time.time() - started, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "int8.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("precisions", "int8_loss_db", "int8_meets_target")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
