"""PSNR/SSIM as the deraining papers score them: outputs quantised to uint8 first, then the Y channel."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.pairs import Pair
from ..data.metrics import psnr_y, ssim_y
from ..errors import DerainError
from ..model import DerainNet


METRICS = ("psnr", "ssim", "input_psnr", "input_ssim", "seconds")


def quantize(rgb: np.ndarray) -> np.ndarray:
    """float RGB -> the uint8 image a user would get, back as float in [0, 1]."""
    return np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.float32) / 255.0


@torch.no_grad()
def derain_pair_input(model: DerainNet, rgb: np.ndarray) -> np.ndarray:
    """float RGB (H, W, 3) -> derained float RGB through the torch model (whole image)."""
    device = next(model.parameters()).device
    batch = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].to(device)
    return model(batch)[0].permute(1, 2, 0).cpu().numpy()


def score_pairs(model: DerainNet, pairs: list[Pair], progress: bool = True) -> tuple[list[dict], list[np.ndarray]]:
    """Per image: PSNR/SSIM of the (uint8) output and of the rainy input, and seconds; and the outputs."""
    model.eval()
    rows, outputs = [], []
    for rainy, clean in tqdm(pairs, desc="eval", unit="image", leave=False, disable=not progress):
        started = time.perf_counter()
        derained = quantize(derain_pair_input(model, rainy))
        seconds = time.perf_counter() - started
        rows.append({"psnr": psnr_y(derained, clean), "ssim": ssim_y(derained, clean),
                     "input_psnr": psnr_y(rainy, clean), "input_ssim": ssim_y(rainy, clean), "seconds": seconds})
        outputs.append(derained)
    return rows, outputs


def mean_scores(rows: list[dict]) -> dict:
    result = {key: round(float(np.mean([r[key] for r in rows])), 4) for key in METRICS}
    result["images"] = len(rows)
    return result


def source_scores(rows: list[dict], sources: list[str]) -> dict:
    """`mean_scores` per source folder (`sources[i]` is where `rows[i]` comes from), in first-seen order."""
    return {source: mean_scores([row for row, s in zip(rows, sources) if s == source])
            for source in dict.fromkeys(sources)}


def evaluate(model: DerainNet, pairs: list[Pair], progress: bool = True) -> dict:
    """Mean Y-channel PSNR/SSIM of the model's uint8 output and of the rainy input."""
    return mean_scores(score_pairs(model, pairs, progress)[0])


def test_splits(root: str | Path) -> dict[str, Path]:
    """Every `<dataset>/test` paired folder under `root` (the layout of docs/training.md), by dataset name."""
    root = Path(root)
    splits = {p.parent.name: p for p in sorted(root.glob("*/test")) if (p / "rain").is_dir() and (p / "norain").is_dir()}
    if not splits:
        raise DerainError(f"{root}: no <dataset>/test/{{rain,norain}} folders")
    return splits


def side_by_side(rainy: np.ndarray, derained: np.ndarray, clean: np.ndarray, caption: str) -> np.ndarray:
    """float RGB panel: rainy | derained | clean, captioned."""
    import cv2

    panel = np.ascontiguousarray(np.rint(np.clip(np.hstack([rainy, derained, clean]), 0, 1) * 255).astype(np.uint8))
    cv2.putText(panel, caption, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
    return panel.astype(np.float32) / 255.0


def evaluate_splits(model: DerainNet, splits: dict[str, Path], save: Path | None = None, worst: int = 3) -> dict:
    """Per split: mean and per-image scores; with `save`, the `worst` images (lowest output PSNR)
    as side-by-side PNGs in `save`."""
    from ..data.pairs import load_pairs, pair_paths
    from ..data.io import Image, write_image

    result = {}
    for name, folder in tqdm(splits.items(), desc="splits", unit="split", disable=len(splits) < 2):
        pairs, paths = load_pairs(folder), pair_paths(folder)
        rows, outputs = score_pairs(model, pairs)
        result[name] = {**mean_scores(rows), "per_image": [{"image": rain.name, **row}
                                                           for row, (rain, _) in zip(rows, paths)]}
        if save is not None:
            for index in sorted(range(len(rows)), key=lambda i: rows[i]["psnr"])[:worst]:
                row, (rainy, clean), image = rows[index], pairs[index], paths[index][0].name
                caption = f"{name}/{image}: input {row['input_psnr']:.2f} dB -> {row['psnr']:.2f} dB"
                panel = side_by_side(rainy, outputs[index], clean, caption)
                target = save / f"{name.replace('/', '-')}-worst-{Path(image).stem}.png"
                write_image(target, Image(panel, np.dtype(np.uint8)))
    return result


def markdown_table(scores: dict) -> str:
    lines = ["| test split | pairs | rainy input PSNR / SSIM | derained PSNR / SSIM | gain | s per image |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, s in scores.items():
        lines.append(f"| {name} | {s['images']} | {s['input_psnr']:.2f} / {s['input_ssim']:.4f} | "
                     f"{s['psnr']:.2f} / {s['ssim']:.4f} | {s['psnr'] - s['input_psnr']:+.2f} dB | {s['seconds']:.2f} |")
    return "\n".join(lines)
