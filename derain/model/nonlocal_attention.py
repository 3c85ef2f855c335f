"""Non-local attention (NAB, stage 2 of the paper, Fig. 4).

Each pixel is assigned to the nearest of K centroids (cosine similarity); pixels are stably
rearranged by cluster so that similar pixels from anywhere in the image become neighbours;
attention runs within consecutive chunks of window*window tokens of that sequence; results go
back to their places. A local (shifted) window attention on the unrearranged map runs beside it
and the two are summed.

Centroids (R) are k-means centroids kept by an exponential moving average of the features
assigned to them during training, as in the Routing Transformer: the assignment is an argmax,
which has no gradient, so they are a buffer, not a parameter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import WindowAttention, multihead_attention
from .sorting import SortMethod, rearrange, restore, sort_positions


class NonLocalAttention(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, clusters: int, shift: bool = False,
                 momentum: float = 0.99) -> None:
        super().__init__()
        self.heads, self.chunk, self.clusters, self.momentum = heads, window * window, clusters, momentum
        self.sort_method: SortMethod = "argsort"  # the export mode switches this to "counting"
        self.local = WindowAttention(dim, heads, window, shift=shift)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("centroids", F.normalize(torch.randn(clusters, dim), dim=-1))

    def assign(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L, C) -> (B, L) cluster ids; in training also moves the centroids."""
        with torch.no_grad():
            unit = F.normalize(tokens, dim=-1)
            cluster_ids = (unit @ self.centroids.t()).argmax(dim=-1)
            if self.training:
                self._update_centroids(unit, cluster_ids)
        return cluster_ids

    def _update_centroids(self, unit: torch.Tensor, cluster_ids: torch.Tensor) -> None:
        one_hot = F.one_hot(cluster_ids, self.clusters).to(unit.dtype)  # (B, L, K)
        sums = torch.einsum("blk,blc->kc", one_hot, unit)
        used = one_hot.sum(dim=(0, 1))[:, None] > 0
        moved = F.normalize(self.momentum * self.centroids + (1 - self.momentum) * F.normalize(sums, dim=-1), dim=-1)
        # A centroid no pixel chose is moved onto a random pixel's feature (a codebook reset, as in
        # VQ-VAE training): random directions mostly miss the cone the features occupy, and without
        # this 3-7 of 8 centroids per block stayed unused, some blocks with a single cluster.
        pixels = unit.reshape(-1, unit.shape[-1])
        reseeded = pixels[torch.randint(len(pixels), (self.clusters,), device=unit.device)]
        self.centroids.copy_(torch.where(used, moved, reseeded))

    def forward(self, x: torch.Tensor, rain_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, H, W, C) with H*W a multiple of window*window; rain_mask is not used."""
        b, h, w, c = x.shape
        tokens = x.reshape(b, h * w, c)
        dest = sort_positions(self.assign(tokens), self.clusters, self.sort_method)
        qkv = rearrange(self.qkv(tokens), dest).reshape(b, h * w // self.chunk, self.chunk, 3 * c)
        out = multihead_attention(qkv, self.heads).reshape(b, h * w, c)
        out = self.proj(restore(out, dest)).reshape(b, h, w, c)
        return out + self.local(x)
