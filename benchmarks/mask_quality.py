"""How well does the rain mask mark rain? Precision and recall against the true rain mask of the
`train` pairs (|rainy - clean| on luma above a threshold), how much of a rain-free photo it flags,
and how much of a rainy image it covers at the coarse levels the MAB sees.

    python benchmarks/mask_quality.py --label after [--checkpoint X] [--data DATA]

Run it on another checkout (PYTHONPATH=<checkout>) with --label before to compare versions: the
script only uses RainMask's call and pyramid. Results merge into benchmarks/results/mask_quality.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from derain.atomic import atomic_path
from derain.data.io import files_in, read_image
from derain.model import load_checkpoint
from derain.data.pairs import add_data_option

TRUE_RAIN = 0.1  # |rainy - clean| luma difference that counts as rain (BT.601 luma in [0, 1])
LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def tensor(path: Path) -> torch.Tensor:
    return torch.from_numpy(read_image(path).rgb.transpose(2, 0, 1).copy())[None]


def luma(image: torch.Tensor) -> torch.Tensor:
    return (image * LUMA).sum(dim=1, keepdim=True)


@torch.no_grad()
def measure(mask_module: torch.nn.Module, data: Path) -> dict:
    results = {}
    for name in ("Rain200H", "GT-RAIN"):
        folder = data / name / "train"
        tp = fp = fn = 0.0
        coarse: dict[int, list[float]] = {2: [], 3: []}
        for rain_path in files_in(folder / "rain"):
            rainy, clean = tensor(rain_path), tensor(folder / "norain" / rain_path.name)
            truth = ((luma(rainy) - luma(clean)).abs() > TRUE_RAIN).float()
            pyramid = mask_module.pyramid(rainy, 3)
            flagged = (pyramid[0] > 0.5).float()
            tp += float((flagged * truth).sum())
            fp += float((flagged * (1 - truth)).sum())
            fn += float(((1 - flagged) * truth).sum())
            for level in coarse:
                coarse[level].append(float(pyramid[level].mean()))
        precision, recall = tp / max(tp + fp, 1.0), tp / max(tp + fn, 1.0)
        results[f"{name}/train"] = {"precision": round(precision, 3), "recall": round(recall, 3),
                                    "f1": round(2 * precision * recall / max(precision + recall, 1e-9), 3),
                                    "mean_mask_quarter": round(float(np.mean(coarse[2])), 3),
                                    "mean_mask_eighth": round(float(np.mean(coarse[3])), 3)}
    clean_paths = [p for p in sorted((data / "clean").rglob("*")) if p.suffix.lower() in (".png", ".jpg")]
    flagged_clean = [float((mask_module(tensor(p)) > 0.5).float().mean()) for p in clean_paths]
    results["clean/flagged"] = round(float(np.mean(flagged_clean)), 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="e.g. before / after")
    parser.add_argument("--checkpoint", type=Path, help="whose learned mask threshold (default: the bundled one)")
    add_data_option(parser)
    parser.add_argument("-o", "--output", type=Path,
                        default=Path(__file__).parent / "results" / "mask_quality.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = load_checkpoint(args.checkpoint)
    results = measure(model.rain_mask, args.data)
    stored = json.loads(args.output.read_text()) if args.output.is_file() else {}
    stored[args.label] = {"checkpoint": str(args.checkpoint or "bundled"), "config": model.config.name,
                          "true_rain_threshold": TRUE_RAIN, **results}
    with atomic_path(args.output) as tmp:
        tmp.write_text(json.dumps(stored, indent=2) + "\n")
    print(json.dumps(stored[args.label], indent=2))


if __name__ == "__main__":
    main()
