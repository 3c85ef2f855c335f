"""Synthetic rain over clean photographs, for training and measuring while no public paired set
(Rain200L/H, DID, DDN) is in ../shared/data.

Streaks follow the usual recipe of Rain100/Rain200-style synthesis: sparse random seeds smeared
along a line (motion blur at one angle per layer), slightly blurred, screen-blended over the image.
Every number reported on these pairs must say they are synthetic.
"""

from __future__ import annotations

import cv2
import numpy as np

# Clean photographs shipped inside the scikit-image wheel (no download). Grayscale ones are used as
# gray RGB. The test split is never trained on.
TRAIN_PHOTOS = ("astronaut", "coffee", "immunohistochemistry", "hubble_deep_field", "retina", "brick",
                "grass", "gravel", "moon", "coins", "colorwheel")
TEST_PHOTOS = ("chelsea", "rocket", "camera")


def sample_photo(name: str) -> np.ndarray:
    """A scikit-image sample photograph as float32 RGB in [0, 1]."""
    import skimage.data  # optional: the `train` extra

    pixels = getattr(skimage.data, name)()
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    return pixels[:, :, :3].astype(np.float32) / 255.0


def rain_layer(height: int, width: int, rng: np.random.Generator, heavy: bool = False) -> np.ndarray:
    """(H, W) float32 streak intensities in [0, 1]: one to three layers of parallel streaks."""
    layers = rng.integers(1, 4) if heavy else 1
    rain = np.zeros((height, width), np.float32)
    for _ in range(layers):
        density = rng.uniform(0.002, 0.012)
        length = int(rng.integers(9, 31))
        angle = np.deg2rad(rng.uniform(-35, 35))
        seeds = (rng.random((height, width)) < density) * rng.uniform(0.6, 1.0, (height, width))
        kernel = np.zeros((length, length), np.float32)
        dx, dy = np.sin(angle) * (length - 1) / 2, np.cos(angle) * (length - 1) / 2
        centre = (length - 1) / 2
        cv2.line(kernel, (round(centre - dx), round(centre - dy)), (round(centre + dx), round(centre + dy)), 1.0)
        streaks = cv2.filter2D(seeds.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT)
        rain = np.maximum(rain, cv2.GaussianBlur(streaks, (3, 3), 0.6))
    return np.clip(rain, 0.0, 1.0)


def add_rain(clean: np.ndarray, rng: np.random.Generator, heavy: bool = False) -> np.ndarray:
    """float RGB in [0, 1] -> the same scene with rain (screen blend of a grey-white streak layer)."""
    strength = rng.uniform(0.5, 0.9)
    rain = rain_layer(*clean.shape[:2], rng, heavy)[:, :, None] * strength
    return (1.0 - (1.0 - clean) * (1.0 - rain)).astype(np.float32)
