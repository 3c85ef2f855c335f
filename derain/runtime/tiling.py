"""Frames of any size through a model of one static input size.

Larger frames are split into overlapping tiles whose outputs are blended with weights that ramp
up from each tile's edges, so no seam shows; smaller frames (or leftovers) are reflect-padded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.io import pad_to


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size `tile` covering `length`, neighbours overlapping by >= `overlap`."""
    if length <= tile:
        return [0]
    stride = max(1, tile - overlap)
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def ramp(tile: int, overlap: int) -> np.ndarray:
    """1-D blend weights: rising over `overlap` pixels at both ends, never zero."""
    weights = np.ones(tile, np.float32)
    if overlap > 0:
        rise = (np.arange(overlap, dtype=np.float32) + 1) / (overlap + 1)
        weights[:overlap] = np.minimum(weights[:overlap], rise)
        weights[-overlap:] = np.minimum(weights[-overlap:], rise[::-1])
    return weights


@dataclass(frozen=True)
class Tiler:
    height: int  # the model's input size
    width: int
    overlap: int = 32

    def split(self, image: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """(H, W, 3) float32 -> (N, 3, height, width) tiles and their (top, left) offsets."""
        padded = pad_to(image, self.height, self.width)
        tops = tile_starts(padded.shape[0], self.height, self.overlap)
        lefts = tile_starts(padded.shape[1], self.width, self.overlap)
        offsets = [(top, left) for top in tops for left in lefts]
        tiles = np.stack([padded[t : t + self.height, l : l + self.width].transpose(2, 0, 1) for t, l in offsets])
        return np.ascontiguousarray(tiles), offsets

    def merge(self, tiles: np.ndarray, offsets: list[tuple[int, int]], height: int, width: int) -> np.ndarray:
        """Inverse of split: blended (height, width, 3) float32."""
        full_h, full_w = max(height, self.height), max(width, self.width)
        total = np.zeros((full_h, full_w, 3), np.float32)
        weight_sum = np.zeros((full_h, full_w, 1), np.float32)
        weights = np.outer(ramp(self.height, self.overlap), ramp(self.width, self.overlap))[:, :, None]
        for tile, (top, left) in zip(tiles, offsets):
            total[top : top + self.height, left : left + self.width] += tile.transpose(1, 2, 0) * weights
            weight_sum[top : top + self.height, left : left + self.width] += weights
        return (total / weight_sum)[:height, :width]
