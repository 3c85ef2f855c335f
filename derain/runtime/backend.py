"""One interface for every inference engine: uint8 BGR frames in, uint8 BGR frames out.

Pre- and post-processing (BGR <-> RGB, uint8 <-> float) and tiling live here, once; a backend
only implements `run` on float32 RGB batches of its input shape."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..data.io import from_pixels, to_pixels
from .tiling import Tiler


class Backend(ABC):
    name = "backend"
    #: (N, 3, H, W) for a static-shape engine; None when the backend takes any size.
    input_shape: tuple[int, ...] | None = None
    overlap = 32  # pixels shared by neighbouring tiles

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 RGB in [0, 1] -> the same shape, derained (not clipped)."""

    def infer(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        return [to_pixels(self.infer_rgb(from_pixels(frame))) for frame in frames]

    def infer_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) float32 RGB of any size -> derained, same size."""
        if self.input_shape is None:
            return self.run(np.ascontiguousarray(rgb.transpose(2, 0, 1))[None])[0].transpose(1, 2, 0)
        batch, _, height, width = self.input_shape
        tiler = Tiler(height, width, min(self.overlap, height // 2, width // 2))
        tiles, offsets = tiler.split(rgb)
        outputs = []
        for start in range(0, len(tiles), batch):
            chunk = tiles[start : start + batch]
            filled = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])  # static batch
            outputs.append(self.run(filled)[: len(chunk)])
        return tiler.merge(np.concatenate(outputs), offsets, *rgb.shape[:2])

    def close(self) -> None:
        """Release device memory and sessions (a no-op where there is nothing to release)."""
