"""PSNR/SSIM as the deraining papers score them: outputs quantised to uint8 first, then the Y channel."""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm import tqdm

from ..data.datasets import Pair
from ..data.metrics import psnr_y, ssim_y
from ..model import DerainNet


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
    result = {key: round(float(np.mean([r[key] for r in rows])), 4) for key in rows[0]}
    result["images"] = len(rows)
    return result


def evaluate(model: DerainNet, pairs: list[Pair], progress: bool = True) -> dict:
    """Mean Y-channel PSNR/SSIM of the model's uint8 output and of the rainy input."""
    return mean_scores(score_pairs(model, pairs, progress)[0])
