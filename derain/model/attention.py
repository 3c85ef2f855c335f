"""(Shifted) window self-attention, optionally masked by the rain mask (MAB) or plain (STB).

Tensors are channels-last (B, H, W, C) so LayerNorm exports as ONNX LayerNormalization and the
projections are plain MatMuls. H and W are multiples of the window (the network pads its input).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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


def shift_region_bias(height: int, width: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """(nW, N, N) bias that keeps a shifted window from mixing pixels of different image regions."""

    def region(size: int) -> torch.Tensor:
        i = torch.arange(size, device=device)
        return (i >= size - window).long() + (i >= size - shift).long()

    ids = region(height)[:, None] * 3 + region(width)[None, :]
    ids = window_partition(ids[None, :, :, None].float(), window)[0, :, :, 0]  # (nW, N)
    different = ids[:, :, None] != ids[:, None, :]
    return different.float() * _SHIFT_REGION_BIAS


class WindowAttention(nn.Module):
    """Window self-attention. With `masked`, keys at rain pixels are suppressed (the MAB).

    The suppression is an additive logit bias -strength * mask(key), strength learnable and
    large (exp(-30) ~ 1e-13), so queries gather from rain-free pixels. A window that is entirely
    rain gets the same bias on every key, which softmax ignores: it falls back to plain attention
    instead of a softmax over nothing."""

    def __init__(self, dim: int, heads: int, window: int, shift: bool = False, masked: bool = False) -> None:
        super().__init__()
        self.heads, self.window, self.shift, self.masked = heads, window, shift, masked
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        if masked:
            # softplus(30) = 30: a learnable, always-positive strength.
            self.mask_strength = nn.Parameter(torch.tensor(30.0))

    def forward(self, x: torch.Tensor, rain_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, H, W, C); rain_mask (B, H, W, 1) in [0, 1], used only when masked."""
        _, h, w, _ = x.shape
        win = self.window
        shift = win // 2 if self.shift and min(h, w) > win else 0
        if shift:
            x = torch.roll(x, (-shift, -shift), dims=(1, 2))
        bias = shift_region_bias(h, w, win, shift, x.device)[None, :, None] if shift else None
        if self.masked:
            if rain_mask is None:
                raise ValueError("masked attention needs a rain mask")
            if shift:
                rain_mask = torch.roll(rain_mask, (-shift, -shift), dims=(1, 2))
            keys = window_partition(rain_mask, win).transpose(-2, -1)  # (B, nW, 1, N)
            key_bias = -F.softplus(self.mask_strength) * keys[:, :, None]  # (B, nW, 1, 1, N)
            bias = key_bias if bias is None else bias + key_bias
        out = multihead_attention(self.qkv(window_partition(x, win)), self.heads, bias)
        out = window_merge(self.proj(out), win, h, w)
        if shift:
            out = torch.roll(out, (shift, shift), dims=(1, 2))
        return out
