"""Quality of each bundled checkpoint on every real test split of a data folder: PSNR/SSIM (Y
channel, uint8 outputs, as the papers score) of the rainy input and of the output, with the
checkpoint's parameters and GFLOPs.

    python benchmarks/quality.py [--data DATA]
        -> benchmarks/results/quality.json, and real-rain.jpg: real rain photographs (no ground
           truth) before and after the default checkpoint, for the eye

The same numbers as `derain eval --data all --checkpoint X`; the splits are never trained on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from derain.atomic import atomic_path
from derain.data.io import Image, read_image, write_image
from derain.info import count_flops
from derain.model import bundled_checkpoint_path, load_checkpoint
from derain.train.evaluate import derain_pair_input, evaluate_splits, markdown_table, test_splits
from derain.data.pairs import add_data_option

CHECKPOINTS = Path(__file__).resolve().parents[1] / "derain" / "checkpoints"
REAL_RAIN = ("real/DDN-real3/1.jpg", "real/DDN-real3/3.jpg", "real/DID-MDN-github/0.png")


def real_rain_figure(model, data: Path, target: Path) -> None:  # noqa: ANN001 - a DerainNet
    """Rows of rainy | derained for photographs of real rain, each scaled to 480 px wide."""
    rows = []
    for name in REAL_RAIN:
        rainy = read_image(data / name).rgb
        derained = np.clip(derain_pair_input(model, rainy), 0, 1)
        pair = np.hstack([rainy, derained])
        scale = 960 / pair.shape[1]
        rows.append(cv2.resize(pair, (960, round(pair.shape[0] * scale)), interpolation=cv2.INTER_AREA))
    write_image(target, Image(np.vstack(rows), np.dtype(np.uint8)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "results" / "quality.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = test_splits(args.data)
    results = {}
    for checkpoint in sorted(CHECKPOINTS.glob("*.pt")):
        model, meta = load_checkpoint(checkpoint)
        scores = evaluate_splits(model, splits)
        results[checkpoint.name] = {
            "config": model.config.name,
            "params": sum(p.numel() for p in model.parameters()),
            "gflops": {"256x256": round(count_flops(model.config.name, 256, 256) / 1e9, 2),
                       "1280x720": round(count_flops(model.config.name, 720, 1280) / 1e9, 2)},
            "splits": {name: {k: v for k, v in s.items() if k != "per_image"} for name, s in scores.items()},
        }
        print(f"{checkpoint.name} ({model.config.name})\n{markdown_table(results[checkpoint.name]['splits'])}\n")
        if checkpoint == bundled_checkpoint_path():
            real_rain_figure(model, args.data, args.output.with_name("real-rain.jpg"))
    with atomic_path(args.output) as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
