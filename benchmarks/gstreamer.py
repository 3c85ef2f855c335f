"""Throughput of the `derain` GStreamer element against `derain run` on the same frames, same model,
same machine, one thread (OMP_NUM_THREADS=1), alternating runs, medians: frames per second of

- `derain run --onnx M frames/ -o out/` (PNG in, PNG out), and
- `gst-launch-1.0 multifilesrc ! pngdec ! videoconvert ! derain onnx=M ! videoconvert ! pngenc !
  multifilesink` (the same frames, PNG in, PNG out),

each timed from process start to exit (model loading included in both), and their ratio (the goal:
the element at >= 0.9 of `derain run`).

    python benchmarks/gstreamer.py [--size 640x360] [--frames 30] [--runs 3]
        -> benchmarks/results/gstreamer.json

The frames are the real-rain reference crops that ship with derain, resized to the size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
from tqdm import tqdm

from derain.atomic import atomic_path
from derain.calib.ranges import reference_groups
from derain.gstreamer import environment

RESULTS = Path(__file__).parent / "results" / "gstreamer.json"


def _timed(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} ...: {result.stderr.strip()[-500:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT of the frames and the model")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each, alternating")
    parser.add_argument("-o", "--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="derain-gst-bench-"))
    sources = sorted((reference_groups()["real"] / "rain").glob("*.png"))
    frames = work / "frames"
    frames.mkdir()
    for index in range(args.frames):
        image = cv2.imread(str(sources[index % len(sources)]))
        cv2.imwrite(str(frames / f"{index:05d}.png"), cv2.resize(image, (width, height)))
    model = work / "realtime.onnx"
    subprocess.run([sys.executable, "-m", "derain", "export", "--height", str(height), "--width", str(width), "-o", str(model)],
                   check=True, capture_output=True)
    env = {**os.environ, **environment(), "OMP_NUM_THREADS": "1", "GST_REGISTRY": str(work / "registry.bin")}
    run = [sys.executable, "-m", "derain", "run", str(frames), "-o", str(work / "run"), "--onnx", str(model), "--threads", "1"]
    gst = ["gst-launch-1.0", "-q", "multifilesrc", f"location={frames}/%05d.png", "caps=image/png,framerate=30/1",
           f"stop-index={args.frames - 1}", "!", "pngdec", "!", "videoconvert", "!", "derain", f"onnx={model}", "threads=1",
           "!", "videoconvert", "!", "pngenc", "!", "multifilesink", f"location={work}/gst-%05d.png"]
    _timed(gst, env)  # the registry is built once, outside the timing
    times: dict[str, list[float]] = {"derain run": [], "element": []}
    for _ in tqdm(range(args.runs), desc="alternating runs", unit="pair"):
        times["derain run"].append(_timed(run, env))
        times["element"].append(_timed(gst, env))
    fps = {name: round(args.frames / statistics.median(values), 3) for name, values in times.items()}
    result = {"size": args.size, "frames": args.frames, "runs": args.runs, "threads": 1, "seconds": times, "fps": fps,
              "element_vs_run": round(fps["element"] / fps["derain run"], 3),
              "command": f"python benchmarks/gstreamer.py --size {args.size} --frames {args.frames} --runs {args.runs}"}
    with atomic_path(args.output) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
