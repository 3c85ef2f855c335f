"""Peak memory and time of `derain run` on one large photo, against its size: frames above
--max-pixels go through overlapping tiles, so memory stays bounded.

    python benchmarks/big_images.py [--sizes 1,6,12,24]   -> benchmarks/results/big_images.json

Each size runs in a fresh process (`derain run --threads 1`, the bundled checkpoint, torch); peak
memory is that process's maximum resident set size.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from derain.atomic import atomic_path

CHILD = """
import resource, sys
from derain.cli import main
code = main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def photo(megapixels: float, path: Path) -> tuple[int, int]:
    """A rainy-looking 3:2 photo of about `megapixels`: smooth colour with bright streaks."""
    height = int((megapixels * 1e6 / 1.5) ** 0.5)
    width = int(height * 1.5)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([x / width, y / height, 0.5 + 0.0 * x], axis=-1) * 200
    rng = np.random.default_rng(0)
    streaks = (rng.random((height, width)) < 0.002).astype(np.float32)
    streaks = cv2.filter2D(streaks, -1, np.ones((15, 1), np.float32))
    cv2.imwrite(str(path), np.clip(image + 255 * streaks[..., None], 0, 255).astype(np.uint8))
    return height, width


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,6,12,24", help="megapixels")
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "results" / "big_images.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for megapixels in (float(m) for m in args.sizes.split(",")):
            source = Path(folder) / f"{megapixels:g}mp.png"
            height, width = photo(megapixels, source)
            started = time.perf_counter()
            result = subprocess.run([sys.executable, "-c", CHILD, "run", str(source), "-o", str(Path(folder) / "out"),
                                     "--threads", "1"], capture_output=True, text=True)
            if result.returncode != 0:
                raise SystemExit(result.stderr)
            peak_kb = int(result.stderr.strip().splitlines()[-1])
            rows.append({"megapixels": round(height * width / 1e6, 1), "size": f"{width}x{height}",
                         "peak_gib": round(peak_kb / 2**20, 2), "seconds": round(time.perf_counter() - started, 1)})
            print(rows[-1], flush=True)
    with atomic_path(args.output) as tmp:
        tmp.write_text(json.dumps({"command": "derain run PHOTO -o OUT --threads 1 (torch, bundled checkpoint, "
                                              "default --max-pixels)", "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
