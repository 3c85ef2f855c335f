"""Small graph-level helpers shared by the blocks."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# Elements a prefix-sum block spans, and the largest operand a MatMul of it may take: TensorRT's
# TF32 rounds MatMul inputs to 11 significant bits, and integers up to 2048 survive that.
PREFIX_BLOCK = 32
TF32_EXACT = 2048


def runtime_ones(x: torch.Tensor) -> torch.Tensor:
    """float32 ones shaped like x, computed from x itself (x == x; x is finite).

    Index maps built on ones_like(x) or arange depend on the shape alone, and the exporter and
    onnxsim fold them into constants of the feature map's size (83 MB of window masks and 8 MB of
    positions per NAB at 720p, even past onnxsim's size threshold). Built on this they stay a few
    small ops, which ONNX Runtime runs in microseconds and TensorRT folds on the device."""
    return (x == x).float()


def prefix_sum(x: torch.Tensor, dim: int, largest: float = 1.0) -> torch.Tensor:
    """Inclusive running sum of float x along `dim`, as x.cumsum(dim) but with no scan in the graph.

    TensorRT before 10.8 (JetPack 6 has 10.3) imports an ONNX CumSum as a loop of one step per
    element: 153,664 sequential steps per 720p frame for the NAB sorts. Here the axis is cut into
    blocks of PREFIX_BLOCK; a constant lower-triangular 0/1 matrix sums within each block, and the
    block totals are summed the same way (recursively: three levels at 61,440 tokens), then added
    back. `largest` bounds |x| (1 for one-hot counts): while a level's operands stay within
    TF32_EXACT the block sum is a MatMul (tensor cores); above that it is a Mul and a ReduceSum,
    which TF32 does not touch, on the few block totals that are left. Exact for integers whose
    running sums stay below 2**24 (counts, positions); static shapes throughout."""
    shape = tuple(int(d) for d in x.shape)  # plain ints: traced sizes mislead onnxsim's shape folding here
    length, inner = shape[dim], math.prod(shape[dim + 1:])
    # The leading dims (the batch) are -1 in every reshape, so a dynamic-batch export stays dynamic.
    outer, restored = (-1, (-1, *shape[1:])) if dim else (1, shape)
    block = min(PREFIX_BLOCK, length)
    blocks = -(-length // block)
    flat = x.reshape(outer, length, inner)
    if blocks * block != length:  # zeros at the end change no running sum before them
        flat = F.pad(flat, (0, 0, 0, blocks * block - length))
    flat = flat.reshape(outer, blocks, block, inner)
    # lower[j, i] = i <= j, a constant in the graph (tril would export as Trilu, which onnxsim cannot fold)
    lower = torch.from_numpy(np.tri(block, dtype=np.float32)).to(x.device, x.dtype)
    if largest <= TF32_EXACT:
        within = lower @ flat  # (outer, blocks, block, inner)
    else:
        within = (lower[:, :, None] * flat[:, :, None]).sum(dim=3)
    if blocks > 1:
        totals = within[:, :, -1]  # (outer, blocks, inner)
        before = prefix_sum(totals, 1, largest * block) - totals  # what all earlier blocks hold
        within = within + before[:, :, None]
    within = within.reshape(outer, blocks * block, inner)
    if blocks * block != length:  # a Slice is a copy of the whole tensor: only where there is padding
        within = within[:, :length]
    return within.reshape(restored)
