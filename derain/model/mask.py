"""Rain-streak mask from morphological operations (stage 1 of the paper, Fig. 2).

Rain streaks are thin and brighter than what lies behind them, so the white top-hat of the
luminance (the image minus its morphological opening) lights them up while flat regions and
large objects give ~0. Erosion and dilation are max-pools (native in ONNX and TensorRT).
The mask is soft (a sigmoid of the thresholded top-hat) so its threshold trains with the network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# ITU-R BT.601 luma weights, the Y of the YCbCr used by the deraining papers.
_LUMA = (0.299, 0.587, 0.114)


def dilate(x: torch.Tensor, kernel: int) -> torch.Tensor:
    return F.max_pool2d(x, kernel, stride=1, padding=kernel // 2)


def erode(x: torch.Tensor, kernel: int) -> torch.Tensor:
    return -F.max_pool2d(-x, kernel, stride=1, padding=kernel // 2)


def white_top_hat(y: torch.Tensor, kernel: int) -> torch.Tensor:
    """Bright details thinner than `kernel` pixels: y minus its opening (erode, then dilate).

    Edge-replicate padding first: max-pool pads with -inf, which would make every border look
    like the end of a bright streak."""
    pad = kernel - 1  # two pools of radius kernel // 2
    padded = F.pad(y, (pad, pad, pad, pad), mode="replicate")
    opened = dilate(erode(padded, kernel), kernel)[..., pad:-pad, pad:-pad]
    return torch.relu(y - opened)


class RainMask(nn.Module):
    """Image (B,3,H,W) in [0,1] -> soft rain mask (B,1,H,W) in [0,1], 1 = rain streak."""

    def __init__(self, kernel: int = 7, threshold_std: float = 1.0, threshold_floor: float = 0.03,
                 softness: float = 0.01) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError("mask kernel must be odd")
        self.kernel = kernel
        self.softness = softness
        # Learnable threshold: mean + a * std of the top-hat + floor (the floor keeps flat images empty).
        self.threshold_std = nn.Parameter(torch.tensor(float(threshold_std)))
        self.threshold_floor = nn.Parameter(torch.tensor(float(threshold_floor)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        luma = sum(w * image[:, c : c + 1] for c, w in enumerate(_LUMA))
        top_hat = white_top_hat(luma, self.kernel)
        mean = top_hat.mean(dim=(2, 3), keepdim=True)
        std = top_hat.std(dim=(2, 3), keepdim=True)
        threshold = mean + self.threshold_std * std + self.threshold_floor
        mask = torch.sigmoid((top_hat - threshold) / self.softness)
        return dilate(mask, 3)  # also cover the streaks' blurred borders

    def pyramid(self, image: torch.Tensor, levels: int) -> list[torch.Tensor]:
        """The mask at full resolution and at each of `levels` halvings (a coarse pixel is rain if any
        of its fine pixels is)."""
        masks = [self(image)]
        for _ in range(levels):
            masks.append(F.max_pool2d(masks[-1], 2))
        return masks
