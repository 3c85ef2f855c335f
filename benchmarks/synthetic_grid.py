"""A grid of synthetic rain (each style) and transplanted rain next to real `train` pairs' rain,
to judge the generator by eye: benchmarks/results/synthetic-rain.png.

    python benchmarks/synthetic_grid.py [--data DATA]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from derain.atomic import atomic_path
from derain.data.datasets import clean_paths, random_crop, read_rgb8
from derain.data.pairs import pair_paths
from derain.data.synthetic import STYLES, add_rain, rain_of_pair, transplant_rain
from derain.data.pairs import add_data_option

CROP = 192


def label(image: np.ndarray, text: str) -> np.ndarray:
    image = np.ascontiguousarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
    cv2.putText(image, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "results" / "synthetic-rain.png")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    cleans = [read_rgb8(p) for p in clean_paths([args.data / "clean"])[::16][:4]]
    rows = []
    for style in STYLES:
        rows.append([label(add_rain(random_crop([c], CROP, rng)[0], rng, style), f"synthetic {style}") for c in cleans])
    heavy = pair_paths(args.data / "Rain200H" / "train")
    transplanted = []
    for clean, (rain, norain) in zip(cleans, heavy):
        rainy_crop, clean_crop = random_crop([read_rgb8(rain), read_rgb8(norain)], CROP, rng)
        layer = rain_of_pair(rainy_crop, clean_crop)
        transplanted.append(label(transplant_rain(random_crop([clean], CROP, rng)[0], layer, rng), "transplanted"))
    rows.append(transplanted)
    for name in ("Rain200H", "GT-RAIN"):
        pairs = pair_paths(args.data / name / "train")[::5][:4]
        rows.append([label(random_crop([read_rgb8(r)], CROP, rng)[0], f"real: {name} train") for r, _ in pairs])
    grid = np.vstack([np.hstack(row) for row in rows])
    with atomic_path(args.output) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
