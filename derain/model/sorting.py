"""Stable rearrangement of tokens by cluster id, the heart of the NAB.

Both implementations return `dest`: the position each token takes when the sequence is stably
sorted by cluster id. Tokens move with `rearrange` (a scatter) and come back with `restore` (a
gather with the same index).

- `positions_argsort`: the plain reference, torch.argsort. It exports as TopK, which TensorRT
  caps at K = 3840 tokens, far below a 720p feature map.
- `positions_counting`: a counting sort with static shapes and no TopK or NonZero:
  one-hot -> cumulative count (rank within the cluster) -> per-cluster offsets. Counts are kept
  in float32: exact up to 2**24 tokens, and CumSum in TensorRT 10.3 has no integer type.
tests/test_sorting.py proves the two equal.
"""

from __future__ import annotations

from typing import Literal

import torch

SortMethod = Literal["argsort", "counting"]


def positions_argsort(cluster_ids: torch.Tensor) -> torch.Tensor:
    """(B, L) integer cluster ids -> (B, L) destination positions, via a stable argsort."""
    order = torch.argsort(cluster_ids, dim=-1, stable=True)  # order[j] = token placed at j
    return torch.argsort(order, dim=-1)  # the inverse permutation: token i goes to dest[i]


def positions_counting(cluster_ids: torch.Tensor, clusters: int) -> torch.Tensor:
    """(B, L) cluster ids in [0, clusters) -> (B, L) destination positions, via a counting sort."""
    one_hot = (cluster_ids[..., None] == torch.arange(clusters, device=cluster_ids.device)).float()
    running = one_hot.cumsum(dim=1)  # (B, L, K): tokens of each cluster seen so far
    counts = running[:, -1]  # (B, K)
    offsets = counts.cumsum(dim=-1) - counts  # where each cluster's run starts
    dest = ((running - 1.0 + offsets[:, None]) * one_hot).sum(dim=-1)
    return dest.long()


def sort_positions(cluster_ids: torch.Tensor, clusters: int, method: SortMethod) -> torch.Tensor:
    if method == "argsort":
        return positions_argsort(cluster_ids)
    if method == "counting":
        return positions_counting(cluster_ids, clusters)
    raise ValueError(f"unknown sort method {method!r}")


def rearrange(tokens: torch.Tensor, dest: torch.Tensor) -> torch.Tensor:
    """(B, L, C) tokens -> the same tokens in sorted order (ScatterElements, no reduction)."""
    return torch.zeros_like(tokens).scatter(1, dest[..., None].expand_as(tokens), tokens)


def restore(tokens: torch.Tensor, dest: torch.Tensor) -> torch.Tensor:
    """Inverse of rearrange (GatherElements)."""
    return tokens.gather(1, dest[..., None].expand(-1, -1, tokens.shape[-1]))
