"""Latency and throughput of a backend, frame in to frame out (tiling and pre/post-processing
included), per frame size; beside it, where the backend can tell (TensorRT), the device's time for
the engine alone, as trtexec's "GPU Compute Time". Results go to
benchmarks/results/runtime-<host>.json."""

from __future__ import annotations

import json
import platform
import resource
import socket
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_path
from ..errors import DerainError
from .backend import Backend

RESULTS = Path("benchmarks") / "results"


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """"640x360,1280x720" -> [(640, 360), (1280, 720)] as (width, height)."""
    sizes = []
    for item in text.split(","):
        try:
            width, height = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise DerainError(f"--sizes {text}: expected WxH[,WxH...], e.g. 640x360,1280x720") from None
        if width < 1 or height < 1:
            raise DerainError(f"--sizes {text}: {item} has no pixels; sizes are at least 1x1")
        sizes.append((width, height))
    return sizes


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_bench(backend: Backend, sizes: str, warmup: int = 3, iterations: int = 10) -> dict:
    rng = np.random.default_rng(0)
    rows = []
    for width, height in parse_sizes(sizes):
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for _ in range(warmup):
            backend.infer([frame])
        times = []
        for _ in tqdm(range(iterations), desc=f"{backend.name} {width}x{height}", unit="frame", leave=False):
            started = time.perf_counter()
            backend.infer([frame])
            times.append(time.perf_counter() - started)
        median = float(np.median(times))
        row = {"size": f"{width}x{height}", "median_ms": round(median * 1000, 2),
               "p95_ms": round(float(np.percentile(times, 95)) * 1000, 2), "fps": round(1 / median, 2),
               "peak_rss_mib": round(_peak_rss_mib(), 1), "iterations": iterations, "warmup": warmup}
        device = backend.device_milliseconds(iterations)  # on the frame just run, after the same warm-up
        if device:
            row.update(device_median_ms=round(float(np.median(device)), 3),
                       device_p95_ms=round(float(np.percentile(device, 95)), 3))
        rows.append(row)
    return {"host": socket.gethostname(), "machine": platform.machine(), "processor": platform.processor(),
            "backend": backend.name, "input_shape": list(backend.input_shape) if backend.input_shape else None,
            "results": rows}


def save_results(results: dict, output: Path | None = None, note: str | None = None) -> Path:
    """Merge into the host's results file: one entry per backend, the newest run replacing the last."""
    path = output or RESULTS / f"runtime-{results['host']}.json"
    try:
        merged = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        merged = {"host": results["host"], "runs": {}}
    merged["runs"][results["backend"]] = {**results, **({"note": note} if note else {})}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(merged, indent=2) + "\n")
    return path
