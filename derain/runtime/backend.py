"""One interface for every inference engine: uint8 BGR frames in, uint8 BGR frames out.

Pre- and post-processing (BGR <-> RGB, uint8 <-> float) and tiling live here, once; a backend
only implements `run` on float32 RGB batches of its input shape."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from tqdm import tqdm

from ..data.io import from_pixels, to_pixels
from ..errors import DerainError
from .tiling import Tiler

DEFAULT_MAX_PIXELS = 2_000_000  # larger frames of a backend that takes any size go through tiles


class BackendUnavailable(DerainError):
    """The backend's server cannot be reached now (a stream drops those frames and retries)."""


class Backend(ABC):
    """A context manager: `with open_backend(...) as backend:` releases it whatever happens."""

    name = "backend"
    #: (N, 3, H, W) for a static-shape engine; None when the backend takes any size.
    input_shape: tuple[int, ...] | None = None
    #: True when the engine takes any batch from 1 to N (export --dynamic-batch), so none is padded.
    dynamic_batch = False
    overlap = 32  # pixels shared by neighbouring tiles
    #: Any-size backends run larger frames as tiles of about this many pixels: memory stays bounded
    #: (a 24 MP photo whole needs tens of GB), at the cost of the tiles' seams being blended.
    max_pixels = DEFAULT_MAX_PIXELS

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 RGB in [0, 1] -> the same shape, derained (not clipped)."""

    def infer(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """uint8 BGR frames -> derained frames. Frames of the engine's own size go through in batches
        of up to N, one inference call each (several cameras, a server's requests); any other frame
        alone, tiled."""
        outputs: list[np.ndarray | None] = [None] * len(frames)
        size = None if self.input_shape is None else self.input_shape[2:]
        fitting = [i for i, frame in enumerate(frames) if frame.shape[:2] == size]
        for i in (i for i in range(len(frames)) if i not in fitting):
            outputs[i] = to_pixels(self.infer_rgb(from_pixels(frames[i])))
        most = self.input_shape[0] if self.input_shape else 1
        for start in range(0, len(fitting), most):
            chosen = fitting[start : start + most]
            batch = np.stack([from_pixels(frames[i]).transpose(2, 0, 1) for i in chosen])
            for i, image in zip(chosen, self.run_batch(batch)):
                outputs[i] = to_pixels(image.transpose(1, 2, 0))
        return outputs  # type: ignore[return-value]  # every index was filled above

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """`run` on up to N images; a static batch is filled up with copies of the last image."""
        count = len(batch)
        most = self.input_shape[0] if self.input_shape else count
        if count < most and not self.dynamic_batch:
            batch = np.concatenate([batch, np.repeat(batch[-1:], most - count, axis=0)])
        return self.run(np.ascontiguousarray(batch))[:count]

    def infer_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) float32 RGB of any size -> derained, same size."""
        if self.input_shape is None and rgb.shape[0] * rgb.shape[1] <= self.max_pixels:
            return self.run(np.ascontiguousarray(rgb.transpose(2, 0, 1))[None])[0].transpose(1, 2, 0)
        if self.input_shape is None:
            side = int(self.max_pixels**0.5)
            batch, height, width = 1, min(side, rgb.shape[0]), min(side, rgb.shape[1])
        else:
            batch, _, height, width = self.input_shape
        tiler = Tiler(height, width, min(self.overlap, height // 2, width // 2))
        tiles, offsets = tiler.split(rgb)
        outputs = []
        steps = range(0, len(tiles), batch)
        for start in tqdm(steps, desc="tiles", unit="tile", leave=False, disable=len(steps) < 4):
            outputs.append(self.run_batch(tiles[start : start + batch]))
        return tiler.merge(np.concatenate(outputs), offsets, *rgb.shape[:2])

    def device_milliseconds(self, iterations: int) -> list[float] | None:
        """The device's time for the engine alone, per run on the last batch given to `run` (no
        copies, no host work), as trtexec's "GPU Compute Time"; None where the backend cannot
        tell it apart from the host's (ONNX Runtime on a CPU, a remote server)."""
        return None

    def close(self) -> None:
        """Release device memory and sessions (a no-op where there is nothing to release)."""
