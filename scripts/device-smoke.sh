#!/usr/bin/env bash
# Once per device: build FP16 and INT8 engines of `tiny`, run them through the shipped TensorRT
# backend and compare with ONNX Runtime (Polygraphy), and print one table. Needs TensorRT and a GPU:
#   pip install -e ".[tensorrt,onnx,plot]"   (on a Jetson: ".[jetson,onnx]" in a --system-site-packages venv)
#   bash scripts/device-smoke.sh [workdir]
set -euo pipefail
work=${1:-$(mktemp -d)}
mkdir -p "$work"
python - "$work" <<'PY'
import sys
from pathlib import Path

import numpy as np
import torch

from derain.calib.quantize import quantize_onnx
from derain.data.datasets import load_pairs
from derain.engines.build import BuildOptions, build_engine
from derain.engines.device import current_device
from derain.export.fp16 import convert_to_fp16
from derain.export.onnx_export import export_onnx
from derain.model import build_model
from derain.validate.report import validate

work = Path(sys.argv[1])
device = current_device()
torch.manual_seed(0)
fp32 = export_onnx(build_model("tiny").eval(), work / "tiny.onnx", 64, 64)
calibration = np.random.default_rng(0).random((8, 3, 64, 64), dtype=np.float32)
onnx = {"fp16": convert_to_fp16(fp32, work / "tiny.fp16.onnx"), "int8": quantize_onnx(fp32, calibration, work / "tiny.int8.onnx")}
print(f"device: {device.gpu} sm{device.compute_capability} TensorRT {device.tensorrt}")
print("| engine | build s | PSNR vs ONNX Runtime FP32 (synthetic) | max abs | median abs |")
print("| --- | ---: | ---: | ---: | ---: |")
for precision, path in onnx.items():
    engine = build_engine(path, BuildOptions(precision=precision, store=work / "engines", name=f"tiny-{precision}"))
    report, _ = validate({"fp32": fp32, "engine": engine}, load_pairs("synthetic"), 10.0, "synthetic")
    entry, seconds = report.precisions["engine"], __import__("json").loads(engine.with_suffix(".json").read_text())["build_seconds"]
    print(f"| {precision} | {seconds} | {entry['psnr']:.2f} (loss {entry['loss_db']:+.3f} dB) | "
          f"{entry['vs_fp32']['max_abs']:.3g} | {entry['vs_fp32']['median_abs']:.3g} |")
PY
