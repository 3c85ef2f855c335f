"""PyTorch backend: CPU or CUDA, with FP16 autocast on CUDA. Imports torch only when chosen."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .backend import Backend


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, checkpoint: str | Path | None = None, device: str = "cpu", fp16: bool | None = None,
                 tile: tuple[int, int] | None = None) -> None:
        import torch

        from ..model import load_checkpoint

        self.torch = torch
        self.model, _ = load_checkpoint(checkpoint, device=device)
        self.device = torch.device(device)
        self.fp16 = self.device.type == "cuda" if fp16 is None else fp16
        # Any size runs whole; `tile` bounds memory on large frames by tiling like a static engine.
        self.input_shape = (1, 3, *tile) if tile else None

    def run(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.float16, enabled=self.fp16):
            output = self.model(torch.from_numpy(batch).to(self.device))
        return output.float().cpu().numpy()
