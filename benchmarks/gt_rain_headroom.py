"""Where the error of real rain lies: how much removing only the streaks could gain on GT-RAIN.

For each GT-RAIN `train` pair (never test), Y-PSNR against the real clean frame of:
- the rainy input;
- a streak oracle (--streak-targets' target): the rainy frame with only its streak pixels (the
  network's own rain mask, where the rainy frame is also brighter than the clean one) taken from
  the tone-aligned clean frame, i.e. perfect streak removal that changes nothing else;
- a detail oracle: the tone-aligned clean frame itself (--align-tone's target): every difference
  finer than sigma 24 px repaired (streaks, rain fog's lost contrast, sharpness), the light kept.
The gap between the two oracles is what a network would have to learn besides streaks, from
GT-RAIN's few scenes, to gain on an unseen one.

    python benchmarks/gt_rain_headroom.py [--data DATA]
        -> benchmarks/results/gt_rain_headroom.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from derain.atomic import atomic_path
from derain.data.datasets import read_rgb8, scene_of, streak_target, tone_aligned
from derain.data.metrics import psnr_y
from derain.data.pairs import pair_paths
from derain.errors import DerainError
from derain.data.pairs import add_data_option


def oracles(rainy: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    """PSNR of the input and of the two oracles (--streak-targets' and --align-tone's targets)."""
    streaks = streak_target(rainy, clean)
    return {"input": psnr_y(rainy / 255.0, clean / 255.0), "streak_oracle": psnr_y(streaks / 255.0, clean / 255.0),
            "detail_oracle": psnr_y(tone_aligned(rainy, clean) / 255.0, clean / 255.0),
            "changed_pixels": float((streaks != rainy).any(axis=2).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    parser.add_argument("-o", "--output", type=Path,
                        default=Path(__file__).parent / "results" / "gt_rain_headroom.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    scenes: dict[str, list[dict[str, float]]] = {}
    for rainy, clean in pair_paths(args.data / "GT-RAIN" / "train"):
        scenes.setdefault(scene_of(rainy), []).append(oracles(read_rgb8(rainy), read_rgb8(clean)))
    table = {scene: {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0]} | {"frames": len(rows)}
             for scene, rows in scenes.items()}
    print("| scene | frames | input | streak oracle | detail oracle | pixels changed |\n| --- | ---: | ---: | ---: | ---: | ---: |")
    for scene, row in table.items():
        print(f"| {scene} | {row['frames']} | {row['input']:.2f} | {row['streak_oracle']:.2f} (+{row['streak_oracle'] - row['input']:.2f}) "
              f"| {row['detail_oracle']:.2f} (+{row['detail_oracle'] - row['input']:.2f}) | {row['changed_pixels']:.1%} |")
    report = {"command": "python benchmarks/gt_rain_headroom.py", "split": "GT-RAIN/train (never test)",
              "unit": "Y-PSNR (dB) against the real clean frame, mean over each scene's frames",
              "scenes": table}
    with atomic_path(args.output) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    try:
        main()
    except DerainError as error:  # no GT-RAIN/train under --data: one line, exit 1
        sys.exit(f"gt_rain_headroom: {error}")
