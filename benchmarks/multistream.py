"""Throughput of several streams on one device: batched in one process (`derain stream --source A
--source B ...` on a dynamic-batch ONNX) against one process per stream (batch 1 each).

Frames per second summed over the streams, as each `derain stream` measures it (capture to sink,
after the model has loaded), medians of --repeats runs, and the ratio batched / per-process measured
in the same run. Both sides get the same CPU threads in all (the batched process N threads, the N
processes one each), ONNX Runtime on the CPU: on a GPU the batched side also saves N-1 engines'
memory and fills the device better, which a CPU cannot show.

    python benchmarks/multistream.py --height 144 --width 256 --frames 24
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from derain.atomic import atomic_path
from derain.export.onnx_export import export_onnx
from derain.model import load_checkpoint

RESULTS = Path(__file__).parent / "results" / "multistream.json"


def write_video(path: Path, frames: int, height: int, width: int, seed: int) -> None:
    """Streaks over a gradient, different per stream: every frame differs."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (width, height))
    base = np.dstack([np.tile(np.linspace(40, 160, width, dtype=np.uint8), (height, 1))] * 3)
    for _ in range(frames):
        frame = base.copy()
        for x in rng.integers(0, width, 40):
            cv2.line(frame, (int(x), 0), (int(x) + 8, height - 1), (235, 235, 235), 1)
        writer.write(frame)
    writer.release()


def stream(videos: list[Path], onnx: Path, threads: int) -> subprocess.Popen:
    words = [sys.executable, "-m", "derain", "stream", "--onnx", str(onnx), "--threads", str(threads)]
    for video in videos:
        words += ["--source", str(video), "--sink", "null"]
    return subprocess.Popen(words, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def fps_of(process: subprocess.Popen) -> float:
    out, _ = process.communicate(timeout=1800)
    if process.returncode:
        raise SystemExit(f"derain stream failed (exit {process.returncode})")
    return json.loads(out)["fps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=144)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--frames", type=int, default=24, help="frames per stream")
    parser.add_argument("--streams", default="1,2,4")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    model, _ = load_checkpoint(None)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        single = export_onnx(model, work / "b1.onnx", args.height, args.width)
        batched = export_onnx(model, work / "bN.onnx", args.height, args.width, max(counts), dynamic_batch=True)
        videos = [work / f"cam{i}.avi" for i in range(max(counts))]
        for seed, video in enumerate(videos):
            write_video(video, args.frames, args.height, args.width, seed)
        for count in counts:
            together, apart = [], []
            for _ in range(args.repeats):  # interleaved, so drifting load hits both sides alike
                together.append(fps_of(stream(videos[:count], batched, count)))
                processes = [stream([video], single, 1) for video in videos[:count]]
                apart.append(sum(fps_of(p) for p in processes))
            row = {"streams": count, "batched_fps": round(statistics.median(together), 2),
                   "per_process_fps": round(statistics.median(apart), 2),
                   "ratio_batched_over_per_process": round(statistics.median(together) / statistics.median(apart), 3),
                   "runs": {"batched": together, "per_process": apart}}
            print(json.dumps(row))
            rows.append(row)
    result = {
        "command": f"python benchmarks/multistream.py --height {args.height} --width {args.width} "
                   f"--frames {args.frames} --streams {args.streams} --repeats {args.repeats}",
        "backend": "onnxruntime CPU", "model": model.config.name, "frame": f"{args.width}x{args.height}",
        "note": "frames/s summed over streams; the same threads in all on both sides; this machine is shared "
                "(a training run held one of its two cores): read the ratios, not the absolute numbers",
        "rows": rows}
    with atomic_path(RESULTS) as tmp:  # a stopped run leaves the last results whole
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
