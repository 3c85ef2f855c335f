"""Calibration frames: spread over a video or a folder of images (not the first N), cut to the
model's input size the way the runtime feeds it (native-resolution tiles, padded when smaller),
saved as calib.npz keyed by the ONNX input name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_path
from ..data.io import files_in, from_pixels, is_video, pad_to, read_image
from ..data.video import VideoReader
from ..errors import DerainError
from ..export.names import INPUT_NAME


def spread_indices(total: int, count: int) -> list[int]:
    """`count` indices spread evenly over range(total), all of them if there are fewer."""
    if total <= count:
        return list(range(total))
    return np.linspace(0, total - 1, count).round().astype(int).tolist()


def tile(rgb: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A (height, width) window of the image at a random place, reflect-padded where it is smaller."""
    rgb = pad_to(rgb, height, width)
    top = int(rng.integers(0, rgb.shape[0] - height + 1))
    left = int(rng.integers(0, rgb.shape[1] - width + 1))
    return rgb[top : top + height, left : left + width]


def _video_frames(path: Path, count: int) -> list[np.ndarray]:
    reader = VideoReader(path)
    frames = iter(reader)
    try:
        if reader.frames <= 0:  # unknown length: read it all, then choose
            everything = list(frames)
            return [from_pixels(everything[i]) for i in spread_indices(len(everything), count)]
        wanted = set(spread_indices(reader.frames, count))
        chosen = []
        for index, frame in enumerate(tqdm(frames, total=reader.frames, desc=path.name, unit="frame")):
            if index in wanted:
                chosen.append(from_pixels(frame))
        return chosen
    finally:
        reader.close()


def sample_frames(source: str | Path, count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(N, 3, height, width) float32 RGB in [0, 1] from a video file or a folder of images."""
    source = Path(source)
    rng = np.random.default_rng(seed)
    if source.is_dir():
        files = files_in(source)
        images = (read_image(files[i]).rgb for i in spread_indices(len(files), count))
        images = tqdm(images, total=min(len(files), count), desc="calib", unit="image")
    elif source.is_file() and is_video(source):
        images = _video_frames(source, count)
    elif source.exists():
        raise DerainError(f"{source}: calibration source must be a video file or a folder of images")
    else:
        raise DerainError(f"{source}: no such file or folder")
    tiles = [tile(rgb, height, width, rng).transpose(2, 0, 1) for rgb in images]
    if not tiles:
        raise DerainError(f"{source}: no frames to calibrate with")
    return np.ascontiguousarray(np.stack(tiles), dtype=np.float32)


def save_calibration(frames: np.ndarray, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:  # np.savez would append .npz to a name without it
            np.savez_compressed(handle, **{INPUT_NAME: frames})
    return Path(path)


def load_calibration(path: str | Path) -> np.ndarray:
    try:
        with np.load(path) as data:
            frames = data[INPUT_NAME]
    except (OSError, ValueError, KeyError) as error:
        raise DerainError(f"{path}: not a calibration file with '{INPUT_NAME}' frames ({error})") from error
    if frames.ndim != 4 or frames.shape[1] != 3 or frames.dtype != np.float32:
        raise DerainError(f"{path}: expected (N, 3, H, W) float32 frames, got {frames.shape} {frames.dtype}")
    return frames
