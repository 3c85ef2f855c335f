"""How much a checkpoint changes real rain photographs, split into tone and detail.

Real rain has no ground truth, but a deraining network should remove streaks (detail) and leave
the light of the scene (tone) alone; the stage-2 checkpoint lost 1.18 dB to the input on GT-RAIN
because it did not. For every fifth photo of DATA/real/SIRR-real147 (scaled to 480 px),
the change of Y (output - input, the papers' Y of data/metrics.py) is split by a Gaussian blur (sigma 24 px, as --align-tone)
into its low frequencies (tone) and the rest (detail), and the mean absolute value of each is
reported.

    python benchmarks/tone_shift.py [CHECKPOINT ...] [--data DATA]
        -> benchmarks/results/tone_shift.json (default: the bundled checkpoint)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from derain.atomic import atomic_path
from derain.data.datasets import TONE_SIGMA, read_rgb8
from derain.data.metrics import rgb_to_y
from derain.errors import DerainError
from derain.model import bundled_checkpoint_path, load_checkpoint
from derain.train.evaluate import derain_pair_input
from derain.data.pairs import add_data_option

SIDE = 480


def photos(data: Path) -> list[Path]:
    folder = data / "real" / "SIRR-real147"
    found = sorted(folder.glob("*.*"))[::5]
    if not found:
        raise DerainError(f"{folder}: no real rain photos (give --data, the folder with real/)")
    return found


def tone_and_detail(model: torch.nn.Module, path: Path) -> tuple[float, float]:
    """Mean |low-frequency| and |high-frequency| change of Y (levels of its 16-235 scale)."""
    rgb = read_rgb8(path)
    scale = SIDE / max(rgb.shape[:2])
    rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    change = rgb_to_y(derain_pair_input(model, rgb)) - rgb_to_y(rgb)
    tone = cv2.GaussianBlur(change, (0, 0), TONE_SIGMA)
    return float(np.abs(tone).mean()), float(np.abs(change - tone).mean())


def tone_summary(model: torch.nn.Module, paths: list[Path], label: str = "photos") -> dict:
    """Mean tone and detail change of Y over `paths` (levels), with a progress bar named `label`."""
    changes = np.array([tone_and_detail(model, p) for p in tqdm(paths, desc=label, unit="photo")])
    return {"tone_change": round(float(changes[:, 0].mean()), 2),
            "detail_change": round(float(changes[:, 1].mean()), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="*", type=Path, default=[bundled_checkpoint_path()])
    add_data_option(parser)
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "results" / "tone_shift.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    paths = photos(args.data)
    results = {}
    for checkpoint in args.checkpoints:
        model, _ = load_checkpoint(checkpoint)
        results[str(checkpoint)] = tone_summary(model, paths, checkpoint.name)
        print(checkpoint, results[str(checkpoint)])
    report = {"command": "python benchmarks/tone_shift.py " + " ".join(map(str, args.checkpoints)),
              "photos": f"{len(paths)} of real/SIRR-real147 (every fifth), {SIDE} px",
              "unit": f"mean |change of Y| (16-235); tone = Gaussian sigma {TONE_SIGMA:g} px, detail = the rest",
              "checkpoints": results}
    with atomic_path(args.output) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    try:
        main()
    except DerainError as error:  # a bad checkpoint or data folder: one line, exit 1
        sys.exit(f"tone_shift: {error}")
