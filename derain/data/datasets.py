"""Paired (rainy, clean) data for training and evaluation.

Training draws random patches, batch by batch, from a weighted mix of four sources:
- `pairs`: crops of paired folders (`rain/` + `norain/`), e.g. Rain200H/train or GT-RAIN/train;
- `synthetic`: clean photographs with fresh synthetic rain (data/synthetic.py);
- `transplant`: the rain layer of a training pair added over another clean photograph;
- `rainless`: a clean photograph as its own target, so the network learns to leave rain-free
  content alone (a camera sees dry frames, and real rain rarely covers a whole frame).
Validation holds out whole scenes (all frames of a GT-RAIN webcam, all DDN versions of a
background), so its score measures scenes the network has never seen, as the test splits do.
Images are decoded lazily and kept as uint8 (a quarter of float32); batch `step` of rank `rank` is
a pure function of (seed, rank, step), so resuming, DataLoader workers and DistributedDataParallel
ranks all see exactly the data an uninterrupted single run would. Never point these at a `test` split.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DerainError
from ..model.mask import RainMask
from .io import check_image_file, image_size, is_image, pad_to, read_image
from .pairs import Pair, check_pair_size, pair_paths
from .synthetic import REAL_HAZE, TRAIN_PHOTOS, add_rain, rain_of_pair, sample_photo, transplant_rain

SOURCES = ("pairs", "synthetic", "transplant", "rainless")
SKIMAGE = "skimage"  # --clean value: scikit-image's sample photographs (no data folder needed)


TONE_SIGMA = 24.0  # pixels: what --align-tone counts as illumination rather than rain


def scene_of(path: str | Path) -> str:
    """The scene a rainy file shows: GT-RAIN's `<Scene>-Webcam-R-<k>` and `<scene>-rain-<k>` frames
    and DDN's `<N>_<k>` versions share one, and so do DID-MDN's `<density>_<background>` files of
    one background; any other name is a scene of its own."""
    stem = Path(path).stem
    density = re.fullmatch(r"(light|medium|heavy)_(\d+)", stem)
    if density:
        return f"background-{density.group(2)}"
    return re.sub(r"(-Webcam-R|-rain)-\d+$|_\d+$", "", stem)


def split_off(items: Sequence, fraction: float, group: Callable = lambda x: x) -> tuple[list, list]:
    """(train, validation): every round(1/fraction)-th group (by first appearance) is held out whole."""
    groups = list(dict.fromkeys(map(group, items)))
    if fraction <= 0 or len(groups) < 2:
        return list(items), []
    every = max(2, round(1 / fraction))
    held = {g for i, g in enumerate(groups) if i % every == every // 2}
    return [x for x in items if group(x) not in held], [x for x in items if group(x) in held]


def split_pairs(folders: Sequence[str | Path], fraction: float) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]]]:
    """Each paired folder split by scene on its own, so every folder has scenes in validation. A
    folder given twice is drawn from twice as often (its validation pairs count once)."""
    train, val = [], []
    for folder in folders:
        kept, held = split_off(pair_paths(folder), fraction, group=lambda pair: scene_of(pair[0]))
        train, val = train + kept, val + held
    return train, list(dict.fromkeys(val))


def tone_aligned(rainy: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """`clean` with the rainy frame's low frequencies: for pairs whose clean frame is another moment
    of the scene (GT-RAIN), whose light changed in between in a way no network can know."""
    rainy32, clean32 = rainy.astype(np.float32), clean.astype(np.float32)
    shift = cv2.GaussianBlur(rainy32 - clean32, (0, 0), TONE_SIGMA)
    return np.clip(np.rint(clean32 + shift), 0, 255).astype(np.uint8)


STREAK_BRIGHTER = 5  # levels of uint8: a streak pixel is brighter than the clean frame in every channel


def streak_target(rainy: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """The rainy frame with only its streaks repaired (from the tone-aligned clean frame): for real
    pairs whose clean frame also differs in fog, sharpness and light. Streaks are where the
    network's own rain mask fires and the rainy frame is brighter than the clean one."""
    aligned = tone_aligned(rainy, clean)
    with torch.no_grad():
        mask = RainMask()(torch.from_numpy(rainy.transpose(2, 0, 1) / 255.0).float()[None])[0, 0].numpy()
    brighter = (rainy.astype(np.int16) - aligned).min(axis=2) > STREAK_BRIGHTER
    weight = (mask * brighter)[:, :, None]
    return np.clip(np.rint(rainy + weight * (aligned.astype(np.float32) - rainy)), 0, 255).astype(np.uint8)


def read_rgb8(path: Path) -> np.ndarray:
    """uint8 RGB (H, W, 3); gray and RGBA files become RGB (IMREAD_COLOR applies EXIF orientation)."""
    check_image_file(path)
    pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if pixels is None:
        raise DerainError(f"{path}: cannot read image (corrupt, empty or not a {path.suffix} file)")
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def clean_paths(folders: Sequence[str | Path]) -> list[Path]:
    """Every image under the folders (recursively; --clean DATA/clean takes all three sets)."""
    paths = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise DerainError(f"{folder}: not a folder of clean photographs")
        found = sorted(p for p in folder.rglob("*") if p.is_file() and is_image(p) and not p.name.startswith("."))
        if not found:
            raise DerainError(f"{folder}: no images")
        paths += found
    return paths


class LazyImages:
    """Decode on first use, keep uint8. Entries are paths, scikit-image sample names, or
    (rainy path, clean path, target) for a target made from both (tone_aligned, streak_target)."""

    def __init__(self, entries: Sequence[Path | str]) -> None:
        self.entries, self.cache = list(entries), {}

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> np.ndarray:
        if index not in self.cache:
            entry = self.entries[index]
            if isinstance(entry, tuple):
                rainy, clean, target = entry
                self.cache[index] = target(read_rgb8(rainy), read_rgb8(clean))
            elif isinstance(entry, Path):
                self.cache[index] = read_rgb8(entry)
            else:
                self.cache[index] = np.rint(sample_photo(entry) * 255).astype(np.uint8)
        return self.cache[index]


def random_crop(images: Sequence[np.ndarray], patch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The same random crop, flips and half turn of each image, as float32 in [0, 1]; images
    smaller than the patch are mirror-padded first. No quarter turns: rain falls near-vertically,
    and the rain mask looks for near-vertical streaks."""
    height, width = images[0].shape[:2]
    top, left = rng.integers(0, max(height - patch, 0) + 1), rng.integers(0, max(width - patch, 0) + 1)
    turns, flip = 2 * int(rng.integers(2)), bool(rng.integers(2))
    out = []
    for image in images:
        crop = pad_to(image[top : top + patch, left : left + patch], patch, patch)
        crop = np.rot90(crop, turns)
        out.append(np.ascontiguousarray(crop[:, ::-1] if flip else crop).astype(np.float32) / 255.0)
    return out


@dataclass(frozen=True)
class DataSpec:
    """Where training data comes from and how the sources mix."""

    pairs: tuple[str, ...] = ()  # paired folders (rain/, norain/)
    clean: tuple[str, ...] = (SKIMAGE,)  # folders of clean photographs, or "skimage"
    rain_layers: tuple[str, ...] = ()  # paired folders whose rain layers are transplanted
    mix: tuple[float, ...] = (1.0, 1.0, 1.0, 0.0)  # weights of pairs, synthetic, transplant, rainless
    val_fraction: float = 0.1
    align_tone: tuple[str, ...] = ()  # paired folders whose clean targets take the rainy frame's tone
    haze: float = REAL_HAZE  # the camera-rain style's largest veil of rain fog
    streak_targets: tuple[str, ...] = ()  # paired folders whose targets repair only the streaks


class TrainingData(Dataset):
    """Item `step` is the whole batch of that step for this rank: (rainy, clean) (B, 3, P, P)."""

    def __init__(self, spec: DataSpec, batch: int, patch_at: Callable[[int], int], seed: int = 0,
                 rank: int = 0, length: int = 0) -> None:
        self.batch, self.patch_at, self.seed, self.rank, self.length = batch, patch_at, seed, rank, length
        self.haze = spec.haze
        self.pairs, self.val_pairs = split_pairs(spec.pairs, spec.val_fraction)
        self.rain_pairs = [p for folder in spec.rain_layers for p in pair_paths(folder) if p not in self.val_pairs]
        clean = ([SKIMAGE] if not spec.clean else spec.clean)
        entries: list[Path | str] = list(TRAIN_PHOTOS) if SKIMAGE in clean else []
        entries += clean_paths([c for c in clean if c != SKIMAGE])
        self.clean, self.val_clean = split_off(entries, spec.val_fraction if not self.val_pairs else 0.0)
        mix = tuple(spec.mix) + (0.0,) * (len(SOURCES) - len(spec.mix))  # runs from before `rainless`
        weights = np.array([mix[0] * bool(self.pairs), mix[1] * bool(self.clean),
                            mix[2] * bool(self.rain_pairs and self.clean), mix[3] * bool(self.clean)], dtype=np.float64)
        if weights.sum() <= 0:
            raise DerainError("no training data: give paired folders, clean photographs, or both")
        self.weights = weights / weights.sum()
        both = set(spec.align_tone) & set(spec.streak_targets)
        if both:
            raise DerainError(f"{sorted(both)[0]}: given to both --align-tone and --streak-targets (one target per pair)")
        made = {p: tone_aligned for folder in spec.align_tone for p in pair_paths(folder)}
        made |= {p: streak_target for folder in spec.streak_targets for p in pair_paths(folder)}
        self.pair_images = LazyImages([e for pair in self.pairs
                                       for e in (pair[0], (*pair, made[pair]) if pair in made else pair[1])])
        self.layer_images = LazyImages([p for pair in self.rain_pairs for p in pair])
        self.clean_images = LazyImages(self.clean)
        self._check_files()

    def _check_files(self) -> None:
        """Decode every file now, so an unreadable image or a pair of two sizes is one line before
        the first step, not a traceback hours into a run (each decoded image is kept for training).
        Pair sizes come from the headers first: the made targets (tone-aligned) need both the same."""
        for rainy, clean in dict.fromkeys([*self.pairs, *self.rain_pairs, *self.val_pairs]):
            check_pair_size(rainy, image_size(rainy), clean, image_size(clean))
        for images in (self.pair_images, self.layer_images, self.clean_images):
            for index in range(len(images)):
                images[index]

    def __len__(self) -> int:
        return self.length

    def sample(self, rng: np.random.Generator, patch: int) -> Pair:
        source = SOURCES[rng.choice(len(SOURCES), p=self.weights)]
        if source == "pairs":
            i = int(rng.integers(len(self.pairs)))
            rainy, clean = random_crop([self.pair_images[2 * i], self.pair_images[2 * i + 1]], patch, rng)
            return rainy, clean
        (clean,) = random_crop([self.clean_images[int(rng.integers(len(self.clean)))]], patch, rng)
        if source == "synthetic":
            return add_rain(clean, rng, haze=self.haze), clean
        if source == "rainless":
            return clean, clean
        i = int(rng.integers(len(self.rain_pairs)))
        rainy, norain = random_crop([self.layer_images[2 * i], self.layer_images[2 * i + 1]], patch, rng)
        return transplant_rain(clean, rain_of_pair(rainy, norain), rng), clean

    def make_batch(self, rng: np.random.Generator, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`batch` samples as (rainy, clean) tensors (B, 3, patch, patch)."""
        pairs = [self.sample(rng, patch) for _ in range(self.batch)]
        return tuple(torch.from_numpy(np.stack([p[k] for p in pairs]).transpose(0, 3, 1, 2).copy()) for k in (0, 1))

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.make_batch(np.random.default_rng((self.seed, self.rank, step)), self.patch_at(step))

    def validation_sources(self) -> list[str]:
        """Where each validation pair comes from ("GT-RAIN/train", or "synthetic"), for per-source scores."""
        if self.val_pairs:
            return ["/".join(rainy.parts[-4:-2]) for rainy, _ in self.val_pairs]
        return ["synthetic"] * len(self.val_clean)

    def training_sources(self) -> list[str]:
        """Where each of `training_pairs` comes from, as `validation_sources`."""
        return ["/".join(rainy.parts[-4:-2]) for rainy, _ in dict.fromkeys(self.pairs)]

    def training_pairs(self) -> list[Pair]:
        """The whole paired images the run trains on (each once), scored against their real clean
        frames like the validation pairs: a run that scores far better here than there is short of
        data, one that scores the same is short of capacity or steps."""
        return [(read_image(r).rgb, read_image(c).rgb) for r, c in dict.fromkeys(self.pairs)]

    def validation_pairs(self) -> list[Pair]:
        """Held-out train pairs (or, with no pairs, held-out clean photos with fixed synthetic rain)."""
        if self.val_pairs:
            return [(read_image(r).rgb, read_image(c).rgb) for r, c in self.val_pairs]
        rng = np.random.default_rng(self.seed)
        cleans = [LazyImages([e])[0].astype(np.float32) / 255.0 for e in self.val_clean]
        return [(add_rain(c, rng, haze=self.haze), c) for c in cleans]
