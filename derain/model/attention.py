"""(Shifted) window self-attention, optionally masked by the rain mask (MAB) or plain (STB).

Tensors are channels-last (B, H, W, C) so LayerNorm exports as ONNX LayerNormalization and the
projections are plain MatMuls. H and W are multiples of the window (the network pads its input, a
stage its map: blocks.Stage).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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
    """Inverse of window_partition for attention's output, heads merged in the same move:
    (B, heads, nW, window*window, d) -> (B, H, W, heads * d)."""
    b, heads, dim = windows.shape[0], windows.shape[1], windows.shape[-1]
    x = windows.reshape(b, heads, height // window, width // window, window, window, dim)
    return x.permute(0, 2, 4, 3, 5, 1, 6).reshape(b, height, width, heads * dim)


def head_projections(tokens: torch.Tensor, qkv: nn.Linear, heads: int,
                     q_bias: bool = True) -> tuple[torch.Tensor, ...]:
    """tokens (B, L, C) -> q, k, v (B, heads, L, C // heads), each one MatMul straight into the
    layout attention needs: no (B, L, 3C) tensor to transpose and split (3x the feature map moved
    twice, the largest layout cost of the 720p graph). Without `q_bias`, q comes without its bias,
    which the caller then adds to the logits as key_term_of_q_bias(k).

    Same weights, same result up to rounding, with three terms moved where they cost nothing:
    - the 1/sqrt(d) scale is folded into q's weights;
    - k's bias adds q.b_k to every logit of a query, a constant per softmax row, which softmax
      ignores: dropped;
    - v's bias comes out of the softmax unchanged (its weights sum to 1): project() adds it."""
    channels = qkv.in_features  # module sizes, not traced shapes: the weights' slices fold to constants
    dim = channels // heads
    weight = qkv.weight.view(3, heads, dim, channels).transpose(-1, -2)  # (3, heads, C, d)
    x = tokens[:, None]  # (B, 1, L, C), broadcast over the heads
    q = x @ (weight[0] * dim**-0.5)
    return q + scaled_q_bias(qkv, heads) if q_bias else q, x @ weight[1], x @ weight[2]


def scaled_q_bias(qkv: nn.Linear, heads: int) -> torch.Tensor:
    """q's bias, times attention's 1/sqrt(d): (heads, 1, d)."""
    dim = qkv.in_features // heads
    return qkv.bias.view(3, heads, 1, dim)[0] * dim**-0.5


def key_term_of_q_bias(k: torch.Tensor, qkv: nn.Linear, group: int) -> torch.Tensor:
    """What q's bias b adds to the logits: b.k_j for key j, the same for every query, so a key bias
    (B, heads, L // group, 1, group) like the rain mask's. Added there, it spares a pass over all
    of q (B, heads, L, d) for a product that reads k once and writes one value a token."""
    b, heads, length, _ = k.shape
    return (k @ scaled_q_bias(qkv, heads).transpose(-1, -2)).reshape(b, heads, length // group, 1, group)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group: int,
              bias: torch.Tensor | None = None) -> torch.Tensor:
    """Attention within consecutive groups of `group` tokens: q, k, v (B, heads, L, d) ->
    (B, heads, L // group, group, d). MatMul, (bias,) Softmax, MatMul: the pattern TensorRT's fused
    attention matches. `bias` is added to the logits and broadcasts against (B, heads, G, N, N)."""
    b, heads, length, dim = q.shape
    q, k, v = (t.reshape(b, heads, length // group, group, dim) for t in (q, k, v))
    logits = q @ k.transpose(-2, -1)
    if bias is not None:
        logits = logits + bias
    return logits.softmax(dim=-1) @ v


def project(out: torch.Tensor, qkv: nn.Linear, proj: nn.Linear) -> torch.Tensor:
    """The output projection of attention (B, ..., C), with v's bias (see head_projections)
    folded into its bias."""
    return F.linear(out, proj.weight, proj.bias + proj.weight @ qkv.bias[2 * proj.in_features:])


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
        bias = shift_region_bias(x, win, shift)[None, None] if shift else None  # (1, 1, nW, N, N)
        if self.position_bias is not None:
            relative = self.position_bias[:, self.position_index][:, None]  # (heads, 1, N, N)
            bias = relative if bias is None else bias + relative
        tokens = window_partition(x, win)
        # A masked block folds q's bias into its key bias, which it adds to the logits anyway.
        q, k, v = head_projections(tokens.reshape(tokens.shape[0], -1, tokens.shape[-1]), self.qkv, self.heads,
                                   q_bias=not self.masked)
        if self.masked:
            if rain_mask is None:
                raise ValueError("masked attention needs a rain mask")
            if shift:
                rain_mask = torch.roll(rain_mask, (-shift, -shift), dims=(1, 2))
            keys = window_partition(rain_mask, win).transpose(-2, -1)[:, None]  # (B, 1, nW, 1, N)
            # (B, heads, nW, 1, N), summed before any (nW, N, N) bias so it stays one value a key
            key_bias = -self.log_mask_strength.exp()[:, None] * keys + key_term_of_q_bias(k, self.qkv, win * win)
            bias = key_bias if bias is None else bias + key_bias
        out = project(window_merge(attention(q, k, v, win * win, bias), win, h, w), self.qkv, self.proj)
        if shift:
            out = torch.roll(out, (shift, shift), dims=(1, 2))
        return out
