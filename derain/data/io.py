"""Reading and writing images and videos, keeping what the user gave us.

The network sees float32 RGB in [0, 1]. Grayscale and RGBA inputs are converted for it and
converted back on output (gray stays gray, alpha is kept); 16-bit images keep their depth.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..atomic import atomic_path
from ..errors import DerainError
from . import DEFAULT_MAX_IMAGE_PIXELS

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
_MAX_VALUE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}

# OpenCV's own log lines would come before our one-line errors; see also derain/__init__.py.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def files_in(folder: Path, videos: bool = False) -> list[Path]:
    """The images (and videos) in a folder, sorted. Hidden files are skipped: among them are the
    temporaries of an interrupted run."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and (is_image(p) or (videos and is_video(p))))


@dataclass
class Image:
    rgb: np.ndarray  # float32 (H, W, 3) in [0, 1]
    dtype: np.dtype  # uint8 or uint16, as read
    grayscale: bool = False
    alpha: np.ndarray | None = None  # the input's alpha channel, untouched

    def with_rgb(self, rgb: np.ndarray) -> "Image":
        return Image(rgb, self.dtype, self.grayscale, self.alpha)


_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"BM": "BMP"}


def image_format(path: Path) -> str | None:
    """"PNG", "JPEG" or "BMP" from the file's first bytes (its name may say otherwise), or None."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)


def header_size(path: Path, kind: str | None) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG or BMP header, without decoding the pixels; None if unknown."""
    with open(path, "rb") as handle:
        if kind == "PNG":
            handle.seek(16)
            data = handle.read(8)
            return (int.from_bytes(data[:4], "big"), int.from_bytes(data[4:], "big")) if len(data) == 8 else None
        if kind == "BMP":
            handle.seek(18)
            data = handle.read(8)
            if len(data) < 8:
                return None
            return abs(int.from_bytes(data[:4], "little", signed=True)), abs(int.from_bytes(data[4:], "little", signed=True))
        if kind != "JPEG":
            return None
        handle.seek(2)
        while (marker := handle.read(2)) and len(marker) == 2 and marker[0] == 0xFF:
            if marker[1] in (0x01, *range(0xD0, 0xD9)):  # markers without a length
                continue
            length = int.from_bytes(handle.read(2), "big")
            if 0xC0 <= marker[1] <= 0xCF and marker[1] not in (0xC4, 0xC8, 0xCC):  # a start of frame
                data = handle.read(5)
                return (int.from_bytes(data[3:5], "big"), int.from_bytes(data[1:3], "big")) if len(data) == 5 else None
            handle.seek(length - 2, os.SEEK_CUR)
    return None


def truncation(path: Path, kind: str | None) -> str | None:
    """Why a JPEG or PNG file is cut short, or None. libjpeg decodes a truncated JPEG with a grey
    fill and a warning on stderr, so the end marker is checked first (JPEG: EOI after the last
    scan, possibly followed by padding; PNG: the IEND chunk)."""
    if kind not in ("JPEG", "PNG"):
        return None
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 4096))
        tail = handle.read().rstrip(b"\x00")
    if kind == "PNG" and b"IEND" not in tail[-12:]:
        return "truncated PNG (no IEND chunk at the end)"
    if kind == "JPEG" and not tail.endswith(b"\xff\xd9"):
        return "truncated JPEG (no end-of-image marker)"
    return None


def check_image_file(path: Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> str | None:
    """What can be told before decoding: the format by content, a cut-off end, a size above
    `max_pixels` (from the header, so a huge image is refused before it is allocated)."""
    kind = image_format(path) if path.is_file() else None
    problem = truncation(path, kind)
    if problem:
        raise DerainError(f"{path}: cannot read image: {problem}")
    size = header_size(path, kind) if kind else None
    if size is not None and size[0] * size[1] > max_pixels:
        raise DerainError(f"{path}: {size[0]}x{size[1]} is {size[0] * size[1] / 1e6:.0f} MP, above the limit of "
                          f"{max_pixels / 1e6:.0f} MP (--max-image-pixels; decoding it takes "
                          f"{size[0] * size[1] * 12 / 2**30:.1f} GiB)")
    return kind


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header where the format has one we read, else by decoding."""
    size = header_size(path, check_image_file(path))
    if size is None:
        rgb = read_image(path).rgb
        size = (rgb.shape[1], rgb.shape[0])
    return size


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Image:
    """Decode an image by its content, upright: a JPEG's EXIF orientation is applied, so the
    output shows as the input shows (and is written without EXIF)."""
    path = Path(path)
    kind = check_image_file(path, max_pixels)
    # IMREAD_UNCHANGED keeps alpha and 16 bits but ignores EXIF orientation; a JPEG has neither.
    flags = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH if kind == "JPEG" else cv2.IMREAD_UNCHANGED
    pixels = cv2.imread(str(path), flags)
    if pixels is None:
        what = "corrupt or empty" if kind else "not a PNG, JPEG or BMP image by its content"
        raise DerainError(f"{path}: cannot read image ({what})")
    if pixels.dtype not in _MAX_VALUE:
        raise DerainError(f"{path}: unsupported pixel type {pixels.dtype} (need 8- or 16-bit)")
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels not in (1, 3, 4):
        raise DerainError(f"{path}: unsupported image with {channels} channels")
    rgb = pixels.astype(np.float32) / _MAX_VALUE[pixels.dtype]
    if channels == 1:
        rgb = np.repeat(rgb.reshape(*rgb.shape[:2], 1), 3, axis=2)
    else:
        rgb = cv2.cvtColor(rgb[:, :, :3], cv2.COLOR_BGR2RGB)
    return Image(np.ascontiguousarray(rgb), pixels.dtype, channels == 1, pixels[:, :, 3] if channels == 4 else None)


def pad_to(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad (H, W, C) bottom/right to at least (height, width): mirrored where the image is more than
    a pixel wide, else repeated."""
    pad_h, pad_w = max(0, height - rgb.shape[0]), max(0, width - rgb.shape[1])
    if not pad_h and not pad_w:
        return rgb
    mode = "reflect" if min(rgb.shape[:2]) > 1 else "edge"
    return np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode)


def to_pixels(rgb: np.ndarray, dtype: np.dtype = np.dtype(np.uint8)) -> np.ndarray:
    """float RGB -> BGR integers of `dtype`, clipped and rounded."""
    bgr = cv2.cvtColor(np.clip(rgb, 0.0, 1.0).astype(np.float32), cv2.COLOR_RGB2BGR)
    return np.rint(bgr * _MAX_VALUE[np.dtype(dtype)]).astype(dtype)


def from_pixels(bgr: np.ndarray) -> np.ndarray:
    """uint8 BGR (a video frame) -> float32 RGB in [0, 1]."""
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def write_image(path: str | Path, image: Image) -> None:
    pixels = to_pixels(image.rgb, image.dtype)
    if image.grayscale:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
    elif image.alpha is not None:
        pixels = np.dstack([pixels, image.alpha])
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), pixels):
            raise DerainError(f"{path}: OpenCV could not write this image")
