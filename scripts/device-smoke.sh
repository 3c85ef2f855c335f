#!/usr/bin/env bash
# Once per device (a GPU with TensorRT 10.3+): FP16 and INT8 engines of the bundled `realtime` at
# 1280x720, timed (GPU alone, host end to end, stream; with and without CUDA graphs) and compared
# with ONNX Runtime FP32 through the shipped TensorRT backend; one table, exit 1 when an engine's
# GPU time is over its bound or it loses more than 0.3 dB (see scripts/device_smoke.py). Install:
#   desktop: pip install torch && pip install -e ".[desktop,tensorrt,onnx]" --extra-index-url https://pypi.nvidia.com
#   Jetson (JetPack 6.1/6.2), no PyTorch: on any PC with the onnx extra, make the ONNX files
#            bash scripts/device-smoke.sh --work smoke-onnx   (it stops at its TensorRT check)
#            then on the Jetson: python3 -m venv --system-site-packages .venv && . .venv/bin/activate &&
#            pip install -e ".[jetson,validate]" && bash scripts/device-smoke.sh --onnx-dir smoke-onnx
#   bash scripts/device-smoke.sh [--size 1280x720] [--data DIR] [--onnx-dir DIR] [--work DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python scripts/device_smoke.py "$@"
