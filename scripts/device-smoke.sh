#!/usr/bin/env bash
# Once per device (a GPU with TensorRT 10.3+): FP16 and INT8 engines of the bundled `realtime` at
# 1280x720, timed and compared with ONNX Runtime FP32 through the shipped TensorRT backend; one
# table, exit 1 when an engine is slower than its bound or loses more than 0.3 dB (see
# scripts/device_smoke.py). Install first:
#   desktop: pip install torch && pip install -e ".[desktop,tensorrt,onnx]" --extra-index-url https://pypi.nvidia.com
#   Jetson (JetPack 6): python3 -m venv --system-site-packages .venv && . .venv/bin/activate &&
#            pip install -e ".[jetson,onnx]"   (JetPack's TensorRT, OpenCV and NumPy stay)
#   bash scripts/device-smoke.sh [--size 1280x720] [--data ../shared/data] [--work DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python scripts/device_smoke.py "$@"
