"""Non-local attention (NAB, stage 2 of the paper, Fig. 4).

Each pixel is assigned to the nearest of K centroids (cosine similarity). Pixels are rearranged
by a sort key so that similar pixels from anywhere in the image become neighbours; attention runs
within consecutive chunks of window*window tokens of that sequence; results go back to their
places. A local (shifted) window attention on the unrearranged map runs beside it; the two are
summed.

Three measures keep the branch non-local (docs/model.md: with a plain stable sort by cluster,
chunks were 1-2-row raster strips and one cluster held 46-86% of the tokens):
- the sort key is cluster x sub-bucket, the sub-bucket being the token's similarity to its
  centroid quantised into `sub_buckets` bins, so a chunk holds tokens of one cluster *and* one
  similarity band, gathered from the whole image instead of a strip in raster order;
- clusters are balanced by a per-cluster bias added to the similarities before the argmax and
  nudged after every training step towards equal use (DeepSeek-V3's auxiliary-loss-free load
  balancing): no loss term, and at inference a constant vector add;
- shifted blocks move chunk boundaries by half a chunk (a sliding window on the rearranged
  sequence), so tokens at a boundary meet their other neighbours in the next block.

Centroids (R) are k-means centroids kept by an exponential moving average of the features
assigned to them during training, as in the Routing Transformer: the assignment is an argmax,
which has no gradient, so they are buffers, not parameters. Under DistributedDataParallel the
per-cluster sums and counts are all-reduced before the update so every rank moves them alike.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .attention import WindowAttention, attention, head_projections, project
from .sorting import SortMethod, gather_rows, inverse_permutation, sort_positions

BALANCE_RATE = 2e-3  # bias step per training step: slow next to the similarities' spread of ~1


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


class NonLocalAttention(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, clusters: int, shift: bool = False,
                 sub_buckets: int = 1, momentum: float = 0.99) -> None:
        super().__init__()
        self.heads, self.chunk, self.clusters, self.momentum = heads, window * window, clusters, momentum
        self.sub_buckets, self.shift = sub_buckets, shift
        self.sort_method: SortMethod = "argsort"  # the export mode switches this to "counting"
        self.reseed = True  # the trainer turns codebook resets off for the last steps
        self.local = WindowAttention(dim, heads, window, shift=shift)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("centroids", F.normalize(torch.randn(clusters, dim), dim=-1))
        self.register_buffer("balance", torch.zeros(clusters))

    def sort_keys(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, C) -> (B, L) cluster ids and (B, L) sort keys; in training also moves the
        centroids and the balancing bias."""
        # FP32 even under autocast: a bf16 similarity moves near-tied tokens to other clusters.
        device = tokens.device.type
        fp32 = torch.autocast(device, enabled=False) if device in ("cpu", "cuda") else nullcontext()  # not meta
        with torch.no_grad(), fp32:
            # Cosine similarity, the norms divided out of the (B, L, K) result rather than the (B, L, C)
            # tokens: K = 8 values a token instead of C = 16..128 (F.normalize's clamp kept).
            tokens = tokens.float()
            norms = tokens.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            similarity = (tokens @ self.centroids.t()) / norms  # (B, L, K)
            cluster_ids = (similarity + self.balance).argmax(dim=-1)
            keys = cluster_ids
            if self.sub_buckets > 1:
                nearness = similarity.gather(-1, cluster_ids[..., None])[..., 0].clamp(0.0, 1.0)
                band = (nearness * (self.sub_buckets - 1e-3)).floor().long()
                keys = cluster_ids * self.sub_buckets + band
            if self.training:
                self._update_centroids(tokens / norms, cluster_ids)
        return cluster_ids, keys

    def _update_centroids(self, unit: torch.Tensor, cluster_ids: torch.Tensor) -> None:
        one_hot = F.one_hot(cluster_ids, self.clusters).to(unit.dtype)  # (B, L, K)
        stats = torch.cat([torch.einsum("blk,blc->kc", one_hot, unit), one_hot.sum(dim=(0, 1))[:, None]], dim=1)
        stats = _all_reduce_sum(stats)
        sums, counts = stats[:, :-1], stats[:, -1]
        moved = F.normalize(self.momentum * self.centroids + (1 - self.momentum) * F.normalize(sums, dim=-1), dim=-1)
        self.balance += BALANCE_RATE * torch.sign(counts.sum() / self.clusters - counts)
        self.balance -= self.balance.mean()
        if not self.reseed:
            self.centroids.copy_(torch.where(counts[:, None] > 0, moved, self.centroids))
            return
        # A centroid no pixel chose is moved onto a random pixel's feature (a codebook reset, as in
        # VQ-VAE training): random directions mostly miss the cone the features occupy, and without
        # this 3-7 of 8 centroids per block stayed unused. Rank 0's pick is used by every rank.
        pixels = unit.reshape(-1, unit.shape[-1])
        reseeded = pixels[torch.randint(len(pixels), (self.clusters,), device=unit.device)].contiguous()
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(reseeded, 0)
        self.centroids.copy_(torch.where(counts[:, None] > 0, moved, reseeded))

    def forward(self, x: torch.Tensor, rain_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, H, W, C) with H*W a multiple of window*window; rain_mask is not used."""
        b, h, w, c = x.shape
        tokens = x.reshape(b, h * w, c)
        _, keys = self.sort_keys(tokens)
        dest = sort_positions(keys, self.clusters * self.sub_buckets, self.sort_method)
        ordered = gather_rows(tokens, inverse_permutation(dest))
        half = self.chunk // 2 if self.shift and h * w > self.chunk else 0
        if half:  # chunk boundaries half a chunk further on, cyclically
            ordered = torch.roll(ordered, -half, dims=1)
        out = attention(*head_projections(ordered, self.qkv, self.heads), self.chunk)  # (B, heads, G, N, d)
        out = project(out.reshape(b, self.heads, h * w, c // self.heads).transpose(1, 2).reshape(b, h * w, c),
                      self.qkv, self.proj)
        if half:
            out = torch.roll(out, half, dims=1)
        return gather_rows(out, dest).reshape(b, h, w, c) + self.local(x)
