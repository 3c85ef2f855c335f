"""NumPy in, NumPy out: one image through the network."""

from __future__ import annotations

import numpy as np
import torch

from .network import DerainNet


@torch.no_grad()
def derain_array(model: DerainNet, rgb: np.ndarray) -> np.ndarray:
    """float RGB (H, W, 3) in [0, 1] -> derained float32 RGB, clipped to [0, 1]."""
    device = next(model.parameters()).device
    batch = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].to(device)
    return model(batch)[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
