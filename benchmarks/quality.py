"""Quality of each bundled checkpoint on every real test split in ../shared/data: PSNR/SSIM (Y
channel, uint8 outputs, as the papers score) of the rainy input and of the output, with the
checkpoint's parameters and GFLOPs.

    python benchmarks/quality.py [--data ../shared/data]   -> benchmarks/results/quality.json

The same numbers as `derain eval --data all --checkpoint X`; the splits are never trained on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from derain.atomic import atomic_path
from derain.info import count_flops
from derain.model import load_checkpoint
from derain.train.evaluate import evaluate_splits, markdown_table, test_splits

CHECKPOINTS = Path(__file__).resolve().parents[1] / "derain" / "checkpoints"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
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
    with atomic_path(args.output) as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
