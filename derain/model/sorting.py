"""Stable rearrangement of tokens by an integer sort key, the heart of the NAB.

Both implementations return `dest`: the position each token takes when the sequence is stably
sorted by key. Tokens move by index only: `inverse_permutation` turns `dest` into `order` (the
token placed at each position) with one (B, L) integer scatter, and `gather_rows` moves whole
rows with a plain Gather. No (B, L, C) index or zeros tensor exists, so nothing of the feature
map's size is folded into the ONNX as a constant (354 MB at 720p with the old ScatterElements move).

- `positions_argsort`: the plain reference, torch.argsort. It exports as TopK, which TensorRT
  caps at K = 3840 tokens, far below a 720p feature map.
- `positions_counting`: a counting sort with static shapes and no TopK, NonZero, CumSum or
  loop: one-hot -> running count (rank within the key) -> per-key offsets, the running sums as
  blocked MatMuls with constant triangular 0/1 matrices (model/ops.py, prefix_sum); each token then
  reads its own key's running count and offset with a GatherElements. Counts are
  float32: exact up to 2**24 tokens, and no MatMul operand exceeds 2048, so TF32 keeps them exact.
tests/test_sorting.py proves the two equal.
"""

from __future__ import annotations

from typing import Literal

import torch

from .ops import prefix_sum, runtime_ones

SortMethod = Literal["argsort", "counting"]


def positions_argsort(keys: torch.Tensor) -> torch.Tensor:
    """(B, L) integer keys -> (B, L) destination positions, via a stable argsort."""
    order = torch.argsort(keys, dim=-1, stable=True)  # order[j] = token placed at j
    return torch.argsort(order, dim=-1)  # the inverse permutation: token i goes to dest[i]


def positions_counting(keys: torch.Tensor, buckets: int) -> torch.Tensor:
    """(B, L) keys in [0, buckets) -> (B, L) destination positions, via a counting sort."""
    one_hot = (keys[..., None] == torch.arange(buckets, device=keys.device)).float()
    running = prefix_sum(one_hot, 1)  # (B, L, K): tokens of each key seen so far
    counts = running[:, -1]  # (B, K)
    offsets = prefix_sum(counts, 1, largest=keys.shape[1]) - counts  # where each key's run starts
    # Each token's own key picked by index: (B, L) values read, not (B, L, K) multiplied and summed.
    rank = running.gather(-1, keys[..., None])[..., 0]  # tokens of its key up to and including it
    return (rank - 1.0 + offsets.gather(-1, keys)).long()


def sort_positions(keys: torch.Tensor, buckets: int, method: SortMethod) -> torch.Tensor:
    if method == "argsort":
        return positions_argsort(keys)
    if method == "counting":
        return positions_counting(keys, buckets)
    raise ValueError(f"unknown sort method {method!r}")


def inverse_permutation(dest: torch.Tensor) -> torch.Tensor:
    """(B, L) dest -> (B, L) order with order[dest[i]] = i: a scatter of L integers per image.

    `dest` itself is the scatter's base: it is a permutation, so every entry is overwritten, and
    no zeros tensor is needed. The positions 0..L-1 are a running count of ones (see runtime_ones
    and prefix_sum), in float32: exact to 2**24."""
    positions = prefix_sum(runtime_ones(dest), 1).long() - 1
    return dest.scatter(1, dest, positions)


def gather_rows(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, L, C) tokens, (B, L) index -> out[b, j] = tokens[b, index[b, j]]: one row Gather."""
    b, length, channels = tokens.shape
    flat = index + (torch.arange(b, device=index.device) * length)[:, None]
    return tokens.reshape(b * length, channels)[flat.reshape(-1)].reshape(b, length, channels)


def rearrange(tokens: torch.Tensor, dest: torch.Tensor) -> torch.Tensor:
    """(B, L, C) tokens -> the same tokens in sorted order."""
    return gather_rows(tokens, inverse_permutation(dest))


def restore(tokens: torch.Tensor, dest: torch.Tensor) -> torch.Tensor:
    """Inverse of rearrange: sorted tokens back to their places."""
    return gather_rows(tokens, dest)
