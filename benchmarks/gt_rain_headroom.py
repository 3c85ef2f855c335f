"""Where the error of real rain lies: how much removing only the streaks could gain on GT-RAIN.

For each GT-RAIN `train` pair (never test), Y-PSNR against the real clean frame of:
- the rainy input;
- a streak oracle: the rainy frame with only its streak pixels (the network's own rain mask,
  where the rainy frame is also brighter than the clean one) taken from the tone-aligned clean frame,
  i.e. perfect streak removal that changes nothing else;
- a detail oracle: the tone-aligned clean frame itself (--align-tone's target): every difference
  finer than sigma 24 px repaired (streaks, rain fog's lost contrast, sharpness), the light kept.
The gap between the two oracles is what a network would have to learn besides streaks, from
GT-RAIN's few scenes, to gain on an unseen one.

    python benchmarks/gt_rain_headroom.py [--data ../shared/data]
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
from derain.data.datasets import read_rgb8, scene_of, tone_aligned
from derain.data.metrics import psnr_y
from derain.data.pairs import pair_paths
from derain.errors import DerainError
from derain.model.mask import RainMask

BRIGHTER = 0.02  # a streak pixel is brighter than the clean frame in every channel by this much


def oracles(rainy8: np.ndarray, clean8: np.ndarray) -> dict[str, float]:
    rainy, clean = rainy8 / 255.0, clean8 / 255.0
    aligned = tone_aligned(rainy8, clean8) / 255.0
    with torch.no_grad():
        mask = RainMask()(torch.from_numpy(rainy.transpose(2, 0, 1).copy()).float()[None])[0, 0].numpy()
    streaks = (mask * ((rainy - aligned).min(axis=2) > BRIGHTER))[:, :, None]
    return {"input": psnr_y(rainy, clean), "streak_oracle": psnr_y(rainy + streaks * (aligned - rainy), clean),
            "detail_oracle": psnr_y(aligned, clean), "streak_pixels": float(streaks.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("-o", "--output", type=Path,
                        default=Path(__file__).parent / "results" / "gt_rain_headroom.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    scenes: dict[str, list[dict[str, float]]] = {}
    for rainy, clean in pair_paths(args.data / "GT-RAIN" / "train"):
        scenes.setdefault(scene_of(rainy), []).append(oracles(read_rgb8(rainy), read_rgb8(clean)))
    table = {scene: {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0]} | {"frames": len(rows)}
             for scene, rows in scenes.items()}
    print("| scene | frames | input | streak oracle | detail oracle | streak pixels |\n| --- | ---: | ---: | ---: | ---: | ---: |")
    for scene, row in table.items():
        print(f"| {scene} | {row['frames']} | {row['input']:.2f} | {row['streak_oracle']:.2f} (+{row['streak_oracle'] - row['input']:.2f}) "
              f"| {row['detail_oracle']:.2f} (+{row['detail_oracle'] - row['input']:.2f}) | {row['streak_pixels']:.1%} |")
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
