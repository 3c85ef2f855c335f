"""Training (Restormer recipe, scaled to what the machine can do) and PSNR/SSIM evaluation."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.datasets import Pair, PatchDataset
from ..data.metrics import psnr_y, ssim_y
from ..model import DerainNet, save_checkpoint
from ..model.inference import derain_array


@dataclass
class TrainSettings:
    data: str = "synthetic"  # "synthetic" or a paired folder with rain/ and norain/
    steps: int = 2000
    batch: int = 8
    patch: int = 128
    lr: float = 3e-4  # AdamW, cosine decay to 1e-6 (Restormer)
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "cpu"


def charbonnier(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((prediction - target) ** 2 + eps**2).mean()


def train(model: DerainNet, settings: TrainSettings, output: str | Path | None = None,
          log_every: int = 50) -> list[float]:
    """Train in place; returns the per-step losses. Saves a checkpoint to `output` if given."""
    torch.manual_seed(settings.seed)
    model.to(settings.device).train()
    dataset = PatchDataset(settings.data, settings.patch, settings.steps * settings.batch, settings.seed)
    loader = DataLoader(dataset, batch_size=settings.batch, num_workers=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.steps, eta_min=1e-6)
    losses: list[float] = []
    started = time.time()
    progress = tqdm(loader, total=settings.steps, desc="train", unit="step")
    for rainy, clean in progress:
        rainy, clean = rainy.to(settings.device), clean.to(settings.device)
        loss = charbonnier(model(rainy), clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if len(losses) % log_every == 0:
            progress.set_postfix(loss=f"{np.mean(losses[-log_every:]):.4f}")
    model.eval()
    if output is not None:
        meta = {"training": asdict(settings), "train_seconds": round(time.time() - started),
                "final_loss": float(np.mean(losses[-log_every:]))}
        save_checkpoint(model, output, meta)
    return losses


def evaluate(model: DerainNet, pairs: list[Pair]) -> dict:
    """Mean Y-channel PSNR/SSIM of the model's output and of the rainy input, vs the clean image."""
    model.eval()
    scores = {"psnr": [], "ssim": [], "input_psnr": [], "input_ssim": []}
    for rainy, clean in tqdm(pairs, desc="eval", unit="image", leave=False):
        derained = derain_array(model, rainy)
        scores["psnr"].append(psnr_y(derained, clean))
        scores["ssim"].append(ssim_y(derained, clean))
        scores["input_psnr"].append(psnr_y(rainy, clean))
        scores["input_ssim"].append(ssim_y(rainy, clean))
    result = {key: round(float(np.mean(values)), 4) for key, values in scores.items()}
    result["images"] = len(pairs)
    return result


