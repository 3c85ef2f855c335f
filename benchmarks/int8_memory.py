"""Peak memory of `derain quantize` at 1280x720 (the default ranges, widened by calibration frames
of a real-rain clip): the INT8 issue's bound is 4 GB. Peak resident set size of the command, read
from the kernel's accounting of the finished child process.

    python benchmarks/int8_memory.py --clip CLIP.mp4 [--frames 8]   # -> results/int8-memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from derain.atomic import atomic_path

RESULTS = Path(__file__).parent / "results"


def derain(*args: object) -> list[str]:
    return [sys.executable, "-m", "derain", *map(str, args)]


# A wrapper process whose only child is the quantize: its RUSAGE_CHILDREN peak is quantize's alone.
PEAK_OF_CHILD = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, required=True, help="a rainy video to calibrate with")
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model, calib = Path(folder) / "m.onnx", Path(folder) / "c.npz"
        for command in (derain("export", "--height", 720, "--width", 1280, "-o", model),
                        derain("calib", "--source", args.clip, "--num", args.frames, "--height", 720, "--width", 1280,
                               "-o", calib)):
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        started = time.time()
        quantize = derain("quantize", model, "--calib", calib, "-o", Path(folder) / "q.onnx")
        peak = subprocess.run([sys.executable, "-c", PEAK_OF_CHILD, *quantize], check=True, capture_output=True,
                              text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        peak_kib = int(peak.stdout.split()[-1])
    result = {"command": f"python benchmarks/int8_memory.py --clip CLIP --frames {args.frames}",
              "input": [1, 3, 720, 1280], "calibration_frames": args.frames,
              "peak_rss_gib": round(peak_kib / 2**20, 3), "peak_rss_gb": round(peak_kib * 1024 / 1e9, 3),
              "bound_gb": 4.0, "seconds": round(time.time() - started, 1)}
    with atomic_path(RESULTS / "int8-memory.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
