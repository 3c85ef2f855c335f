"""Paired (rainy, clean) data: folders on disk, or synthetic rain over sample photographs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DerainError
from .io import is_image, read_image
from .synthetic import TEST_PHOTOS, TRAIN_PHOTOS, add_rain, sample_photo

Pair = tuple[np.ndarray, np.ndarray]  # (rainy, clean) float32 RGB in [0, 1]


def folder_pairs(root: str | Path) -> list[tuple[Path, Path]]:
    """`root/rain/X` with `root/norain/X` (the layout of ../shared/data/<dataset>/<split>/)."""
    root = Path(root)
    rain_dir, clean_dir = root / "rain", root / "norain"
    if not rain_dir.is_dir() or not clean_dir.is_dir():
        raise DerainError(f"{root}: expected subfolders rain/ and norain/")
    pairs = [(p, clean_dir / p.name) for p in sorted(rain_dir.iterdir()) if is_image(p)]
    missing = [str(clean) for _, clean in pairs if not clean.is_file()]
    if missing:
        raise DerainError(f"{missing[0]}: no clean image pairs with the rainy one of the same name")
    if not pairs:
        raise DerainError(f"{rain_dir}: no images")
    return pairs


def load_pairs(source: str | Path, seed: int = 0) -> list[Pair]:
    """Evaluation pairs: a paired folder, or "synthetic" (the held-out photos, 3 rain draws each)."""
    if str(source) == "synthetic":
        rng = np.random.default_rng(seed)
        pairs = []
        for name in TEST_PHOTOS:
            clean = sample_photo(name)
            pairs += [(add_rain(clean, rng, heavy=draw == 2), clean) for draw in range(3)]
        return pairs
    return [(read_image(rain).rgb, read_image(clean).rgb) for rain, clean in folder_pairs(source)]


def random_patch(pair: Pair, patch: int, rng: np.random.Generator) -> Pair:
    """A random crop with a random flip / 90-degree rotation, the same for both images."""
    rainy, clean = pair
    top = rng.integers(0, rainy.shape[0] - patch + 1)
    left = rng.integers(0, rainy.shape[1] - patch + 1)
    turns, flip = int(rng.integers(4)), bool(rng.integers(2))

    def augment(image: np.ndarray) -> np.ndarray:
        image = np.rot90(image[top : top + patch, left : left + patch], turns)
        return np.ascontiguousarray(image[:, ::-1] if flip else image)

    return augment(rainy), augment(clean)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float RGB -> (3, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


class PatchDataset(Dataset):
    """`length` training patches. From clean photos, each gets fresh synthetic rain; from paired
    folders, a random crop of a random pair. Item i is the same on every run (seeded by i)."""

    def __init__(self, source: str | Path, patch: int, length: int, seed: int = 0) -> None:
        self.patch, self.length, self.seed = patch, length, seed
        self.synthetic = str(source) == "synthetic"
        if self.synthetic:
            self.images: list = [sample_photo(name) for name in TRAIN_PHOTOS]
        else:
            self.images = [(read_image(r).rgb, read_image(c).rgb) for r, c in folder_pairs(source)]
        small = [i for i in self.images if min((i[0] if isinstance(i, tuple) else i).shape[:2]) < patch]
        if small:
            raise DerainError(f"{source}: {len(small)} images are smaller than the {patch}px patch")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, index))
        item = self.images[rng.integers(len(self.images))]
        if self.synthetic:
            clean = random_patch((item, item), self.patch, rng)[1]
            pair = (add_rain(clean, rng, heavy=rng.random() < 0.3), clean)
        else:
            pair = random_patch(item, self.patch, rng)
        return to_tensor(pair[0]), to_tensor(pair[1])
