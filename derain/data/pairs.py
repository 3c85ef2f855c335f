"""Paired folders (`rain/` + `norain/`) for evaluation and validation, without torch: `derain
validate` and `derain eval` read them on machines (a Jetson) that have no PyTorch."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import numpy as np

from ..errors import DerainError
from .io import files_in, read_image
from .synthetic import TEST_PHOTOS, add_rain, sample_photo

Pair = tuple[np.ndarray, np.ndarray]  # (rainy, clean) float32 RGB in [0, 1]
DATA_ENV = "DERAIN_DATA"  # the data folder when no option names one; its layout: docs/training.md


def default_data_root() -> Path | None:
    return Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else None


def add_data_option(parser: argparse.ArgumentParser, name: str = "--data", what: str = "the data folder") -> None:
    """`name` FOLDER, defaulting to $DERAIN_DATA and required where that is unset."""
    default = default_data_root()
    parser.add_argument(name, type=Path, default=default, required=default is None,
                        help=f"{what}, laid out as docs/training.md says (default: ${DATA_ENV})")


def clean_name_candidates(rain_name: str) -> list[str]:
    """Names the clean image of rainy file `rain_name` goes by in the usual datasets: the same name
    (Rain100L/H, Rain200H here), `rain-N` -> `norain-N` (Rain200L/H originals), `norain-Nx2` ->
    `norain-N` (Rain200L/H rainy files), and DDN's `N_k` -> `N` (14 rain versions per clean image)."""
    path = Path(rain_name)
    stem, suffix = path.stem, path.suffix
    stems = [stem, re.sub(r"^rain-", "norain-", stem), re.sub(r"x2$", "", stem), re.sub(r"_\d+$", "", stem)]
    return list(dict.fromkeys(s + ext for s in stems for ext in dict.fromkeys([suffix, ".png", ".jpg"])))


def pair_paths(root: str | Path) -> list[tuple[Path, Path]]:
    """`root/rain/X` with its clean image in `root/norain/` (the layout of docs/training.md)."""
    root = Path(root)
    rain_dir, clean_dir = root / "rain", root / "norain"
    if not rain_dir.is_dir() or not clean_dir.is_dir():
        raise DerainError(f"{root}: expected subfolders rain/ and norain/")
    pairs = []
    for rain in files_in(rain_dir):
        clean = next((clean_dir / n for n in clean_name_candidates(rain.name) if (clean_dir / n).is_file()), None)
        if clean is None:
            raise DerainError(f"{rain}: no clean image pairs with it in {clean_dir}")
        pairs.append((rain, clean))
    if not pairs:
        raise DerainError(f"{rain_dir}: no images")
    return pairs


def load_pairs(source: str | Path, seed: int = 0) -> list[Pair]:
    """Evaluation pairs: a paired folder, or "synthetic" (held-out photos, one draw of each style)."""
    if str(source) == "synthetic":
        rng = np.random.default_rng(seed)
        return [(add_rain(clean, rng, style), clean) for clean in map(sample_photo, TEST_PHOTOS)
                for style in ("light", "heavy", "real")]
    return [same_size(rain, read_image(rain).rgb, clean, read_image(clean).rgb) for rain, clean in pair_paths(source)]


def same_size(rain: Path, rainy: np.ndarray, clean: Path, target: np.ndarray) -> Pair:
    """The pair, or one line naming both files when they differ in size (no pixel-wise score exists)."""
    check_pair_size(rain, rainy.shape[1::-1], clean, target.shape[1::-1])
    return rainy, target


def check_pair_size(rain: Path, rain_size: tuple[int, int], clean: Path, clean_size: tuple[int, int]) -> None:
    """One line naming both files when a pair's (width, height) differ."""
    if tuple(rain_size) != tuple(clean_size):
        raise DerainError(f"{clean}: {clean_size[0]}x{clean_size[1]}, but its rainy pair {rain} is "
                          f"{rain_size[0]}x{rain_size[1]}; a pair must be one size")
