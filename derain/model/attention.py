"""(Shifted) window self-attention, optionally masked by the rain mask (MAB) or plain (STB).

Tensors are channels-last (B, H, W, C) so LayerNorm exports as ONNX LayerNormalization and the
projections are plain MatMuls. H and W are multiples of the window (the network pads its input).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .ops import prefix_sum, runtime_ones

# Swin's bias for pairs that a cyclic shift brought together from opposite borders.
_SHIFT_REGION_BIAS = -100.0


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, nW, window*window, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // window) * (w // window), window * window, c)


def window_merge(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of window_partition: (B, nW, window*window, C) -> (B, H, W, C)."""
    b, c = windows.shape[0], windows.shape[-1]
    x = windows.reshape(b, height // window, width // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, height, width, c)


def multihead_attention(qkv: torch.Tensor, heads: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Attention within groups of tokens: qkv (B, G, N, 3C) -> (B, G, N, C).

    `bias` is added to the logits and broadcasts against (B, G, heads, N, N)."""
    b, g, n, c3 = qkv.shape
    dim = c3 // 3
    q, k, v = qkv.reshape(b, g, n, 3, heads, dim // heads).permute(3, 0, 1, 4, 2, 5)
    logits = (q * (dim // heads) ** -0.5) @ k.transpose(-2, -1)
    if bias is not None:
        logits = logits + bias
    out = logits.softmax(dim=-1) @ v  # (B, G, heads, N, d)
    return out.permute(0, 1, 3, 2, 4).reshape(b, g, n, dim)


def shift_region_bias(x: torch.Tensor, window: int, shift: int) -> torch.Tensor:
    """(nW, N, N) bias that keeps a shifted window of x (B, H, W, C) from mixing pixels of
    different image regions.

    Computed in the graph from runtime_ones(x): as a constant it put one (nW, N, N) tensor per
    resolution into the ONNX, 83 MB for `edge` at 720p."""
    _, h, w, _ = x.shape
    ones = runtime_ones(x[0, :, :, :1])  # (H, W, 1)
    rows, cols = prefix_sum(ones, 0) - 1, prefix_sum(ones, 1) - 1

    def region(index: torch.Tensor, size: int) -> torch.Tensor:
        return (index >= size - window).float() + (index >= size - shift).float()

    ids = window_partition((region(rows, h) * 3 + region(cols, w))[None], window)[0, :, :, 0]  # (nW, N)
    return (ids[:, :, None] != ids[:, None, :]).float() * _SHIFT_REGION_BIAS


class WindowAttention(nn.Module):
    """Window self-attention. With `masked`, keys at rain pixels are suppressed (the MAB); with
    `position_bias`, Swin's learned relative position bias is added (the STB of Table 2).

    The suppression is an additive logit bias -strength_h * mask(key), one strength per head on a
    log scale starting at MASK_STRENGTH: a softplus strength started at 30 never moved in training,
    since AdamW moves a parameter by about lr per step; its log moves in proportion. A window that
    is entirely rain gets the same bias on every key, which softmax ignores: it falls back to plain
    attention instead of a softmax over nothing."""

    MASK_STRENGTH = 4.0  # exp(-4) ~ 0.02 of a clean key's weight, and free to grow or shrink

    def __init__(self, dim: int, heads: int, window: int, shift: bool = False, masked: bool = False,
                 position_bias: bool = False) -> None:
        super().__init__()
        self.heads, self.window, self.shift, self.masked = heads, window, shift, masked
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        if masked:
            self.log_mask_strength = nn.Parameter(torch.full((heads, 1, 1), math.log(self.MASK_STRENGTH)))
        self.position_bias = None
        if position_bias:
            # Swin: one learned bias per head and relative offset (2w-1)^2, indexed per pair of the
            # window's positions; the index is a buffer, so the bias exports as Gather + Add.
            self.position_bias = nn.Parameter(torch.zeros(heads, (2 * window - 1) ** 2))
            nn.init.trunc_normal_(self.position_bias, std=0.02)
            rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
            coords = torch.stack([rows.flatten(), cols.flatten()])  # (2, N)
            offset = (coords[:, :, None] - coords[:, None, :]) + window - 1  # (2, N, N) in [0, 2w-2]
            self.register_buffer("position_index", offset[0] * (2 * window - 1) + offset[1], persistent=False)

    def forward(self, x: torch.Tensor, rain_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, H, W, C); rain_mask (B, H, W, 1) in [0, 1], used only when masked."""
        _, h, w, _ = x.shape
        win = self.window
        shift = win // 2 if self.shift and min(h, w) > win else 0
        if shift:
            x = torch.roll(x, (-shift, -shift), dims=(1, 2))
        bias = shift_region_bias(x, win, shift)[None, :, None] if shift else None
        if self.position_bias is not None:
            relative = self.position_bias[:, self.position_index]  # (heads, N, N)
            bias = relative if bias is None else bias + relative
        if self.masked:
            if rain_mask is None:
                raise ValueError("masked attention needs a rain mask")
            if shift:
                rain_mask = torch.roll(rain_mask, (-shift, -shift), dims=(1, 2))
            keys = window_partition(rain_mask, win).transpose(-2, -1)  # (B, nW, 1, N)
            key_bias = -self.log_mask_strength.exp() * keys[:, :, None]  # (B, nW, heads, 1, N)
            bias = key_bias if bias is None else bias + key_bias
        out = multihead_attention(self.qkv(window_partition(x, win)), self.heads, bias)
        out = window_merge(self.proj(out), win, h, w)
        if shift:
            out = torch.roll(out, (shift, shift), dims=(1, 2))
        return out
