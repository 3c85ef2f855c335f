"""Blocks (STB, MAB, NAB transformer blocks; plain residual convolutions) and the stages that stack them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import WindowAttention
from .config import BlockKind, StageKind
from .nonlocal_attention import NonLocalAttention


class GatedConvFeedForward(nn.Module):
    """Restormer's gated depthwise-conv feed-forward. Its 3x3 depthwise conv is also what gives the
    window attention (which has no position bias here) a sense of position.

    Computed in NCHW from one transpose of the C input channels (not two of the 2 * hidden expanded
    ones), and each half (gate, value) by its own convolutions, so nothing is split. Same weights,
    same result up to rounding."""

    def __init__(self, dim: int, expansion: float) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.expand = nn.Linear(dim, 2 * hidden)
        self.depthwise = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden)
        self.reduce = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, channels_first: bool = False) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C), or (B, C, H, W) with `channels_first`."""
        x = x.permute(0, 3, 1, 2)
        hidden = self.reduce.in_features
        gate, value = (F.conv2d(F.conv2d(x, self.expand.weight[half, :, None, None], self.expand.bias[half]),
                                self.depthwise.weight[half], self.depthwise.bias[half], padding=1, groups=hidden)
                       for half in (slice(0, hidden), slice(hidden, None)))
        y = F.conv2d(F.gelu(gate) * value, self.reduce.weight[:, :, None, None], self.reduce.bias)
        return y if channels_first else y.permute(0, 2, 3, 1)


def make_attention(kind: BlockKind, dim: int, heads: int, window: int, clusters: int, shift: bool,
                   sub_buckets: int) -> nn.Module:
    if kind == "stb":  # Swin's block: window attention with a relative position bias
        return WindowAttention(dim, heads, window, shift=shift, position_bias=True)
    if kind == "mab":
        return WindowAttention(dim, heads, window, shift=shift, masked=True)
    if kind == "nab":
        return NonLocalAttention(dim, heads, window, clusters, shift=shift, sub_buckets=sub_buckets)
    raise ValueError(f"unknown block kind {kind!r}")


class ConvBlock(nn.Module):
    """x + conv3x3(ReLU(conv3x3(x))) (EDSR's residual block): the plain, wide convolutions that
    TensorRT runs near peak, for the full- and half-resolution levels of the real-time network."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(dim, dim, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attention(LN(x)), then x + FFN(LN(x)). Channels-last."""

    def __init__(self, kind: BlockKind, dim: int, heads: int, window: int, clusters: int, shift: bool,
                 ffn_expansion: float, sub_buckets: int = 1) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = make_attention(kind, dim, heads, window, clusters, shift, sub_buckets)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = GatedConvFeedForward(dim, ffn_expansion)

    def forward(self, x: torch.Tensor, rain_mask: torch.Tensor | None, channels_first: bool = False) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C), or (B, C, H, W) with `channels_first`: then the last sum is
        taken in the FFN's own layout, so x is transposed instead of the FFN's result and the sum
        (one transpose where there were two)."""
        x = x + self.attn(self.norm1(x), rain_mask)
        if channels_first:
            return x.permute(0, 3, 1, 2) + self.ffn(self.norm2(x), channels_first=True)
        return x + self.ffn(self.norm2(x))


class Stage(nn.Module):
    """`depth` blocks of one kind on (B, C, H, W) maps; odd transformer blocks shift their windows
    (Swin) and their NAB chunks. A transformer stage on a map that does not tile into whole windows
    (the bottleneck's: config.size_multiple) pads it, mirrored, and crops the result."""

    def __init__(self, kind: StageKind, depth: int, dim: int, heads: int, window: int, clusters: int,
                 ffn_expansion: float, sub_buckets: int = 1) -> None:
        super().__init__()
        self.kind, self.window = kind, window
        if kind == "conv":
            self.blocks = nn.ModuleList(ConvBlock(dim) for _ in range(depth))
        else:
            self.blocks = nn.ModuleList(
                TransformerBlock(kind, dim, heads, window, clusters, shift=i % 2 == 1, ffn_expansion=ffn_expansion,
                                 sub_buckets=sub_buckets)
                for i in range(depth)
            )

    @property
    def takes_channels_last(self) -> bool:
        """Whether the stage computes channels-last (transformer blocks): the network then hands it
        (B, H, W, C) where it can do so without a transpose of its own."""
        return self.kind != "conv"

    def forward(self, x: torch.Tensor, rain_mask: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        """x (B, C, H, W), or (B, H, W, C) with `channels_last`; rain_mask (B, 1, H, W) -> (B, C, H, W)."""
        if self.kind == "conv":
            for block in self.blocks:
                x = block(x)
            return x
        x = x if channels_last else x.permute(0, 2, 3, 1)
        if not self.blocks:
            return x.permute(0, 3, 1, 2)
        height, width = (int(size) for size in x.shape[1:3])  # plain ints: static in an export
        x, mask = (pad_to_windows(t, self.window) for t in (x, rain_mask.permute(0, 2, 3, 1)))
        for block in self.blocks[:-1]:
            x = block(x, mask)
        x = self.blocks[-1](x, mask, channels_first=True)
        return x if x.shape[-2:] == (height, width) else x[..., :height, :width]


def pad_to_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) padded at the bottom and right to whole windows: mirrored, as pad_to_multiple pads
    the image, along a side longer than its padding, else replicated."""
    for dim in (1, 2):
        size = int(x.shape[dim])
        extra = -size % window
        if not extra:
            continue
        if extra < size:  # mirrored, the last line not repeated (F.pad's "reflect")
            padding = [x.narrow(dim, size - 1 - extra, extra).flip(dim)]
        else:  # replicated
            padding = [x.narrow(dim, size - 1, 1)] * extra
        x = torch.cat([x, *padding], dim)
    return x
