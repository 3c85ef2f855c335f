"""Synthetic rain over clean photographs, and rain layers transplanted from real training pairs.

Three styles, after the sets they imitate (compare benchmarks/results/synthetic-rain.png, made by
benchmarks/synthetic_grid.py, with the `train` pairs beside them):
- "light" (Rain100L-like): one layer of sparse, thin, long streaks at one angle;
- "heavy" (Rain100H/Rain200H-like): two or three denser layers of wider, brighter streaks at
  nearby angles, and a veil of haze;
- "real" (GT-RAIN-like camera rain): many short, faint, blurred streaks and a veil of rain fog of
  up to `haze` (default a trace: 0.05). A global fit rainy = t * clean + (1 - t) * A to GT-RAIN's
  train pairs gives t from 0.34 to 0.92 (a veil up to 0.66), but taught from synthetic fog up to
  0.9 the network did not lift the fog of an unseen real scene (see the model card).
Streaks are sparse seeds smeared along a line (motion blur), blurred, and added over the image
(Rain100/Rain200 add their streaks; clipping then saturates them as a camera does).
Every number reported on these pairs must say they are synthetic.
"""

from __future__ import annotations

import cv2
import numpy as np

STYLES = ("light", "heavy", "real")
STYLE_WEIGHTS = (0.4, 0.35, 0.25)
REAL_HAZE = 0.05  # the camera-rain style's largest veil unless a run sets its own (--haze)

# Clean photographs shipped inside the scikit-image wheel (no download), for tests and the
# `synthetic` evaluation when no data folder is at hand. The test split is never trained on.
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


def _streaks(height: int, width: int, rng: np.random.Generator, density: float, length: int, angle_deg: float,
             thickness: int, blur: float) -> np.ndarray:
    """(H, W) float32 streak intensities in [0, 1] of one layer at one angle."""
    seeds = ((rng.random((height, width)) < density) * rng.uniform(0.5, 1.0, (height, width))).astype(np.float32)
    if thickness > 1:
        seeds = cv2.dilate(seeds, np.ones((1, thickness), np.uint8))
    kernel = np.zeros((length, length), np.float32)
    angle = np.deg2rad(angle_deg)
    dx, dy = np.sin(angle) * (length - 1) / 2, np.cos(angle) * (length - 1) / 2
    centre = (length - 1) / 2
    cv2.line(kernel, (round(centre - dx), round(centre - dy)), (round(centre + dx), round(centre + dy)), 1.0)
    streaks = cv2.filter2D(seeds, -1, kernel, borderType=cv2.BORDER_REFLECT)
    return np.clip(cv2.GaussianBlur(streaks, (0, 0), blur), 0.0, 1.0)


def rain_layer(height: int, width: int, rng: np.random.Generator, style: str = "light",
               haze: float = REAL_HAZE) -> tuple[np.ndarray, float]:
    """(H, W) streak layer scaled to its intensity, and a haze amount in [0, 1) (`haze`: the
    camera-rain style's largest)."""
    angle = rng.uniform(-30, 30)
    if style == "light":
        layer = _streaks(height, width, rng, rng.uniform(0.001, 0.006), int(rng.integers(15, 41)), angle, 1,
                         rng.uniform(0.4, 0.9)) * rng.uniform(0.35, 0.8)
        return layer, 0.0
    if style == "heavy":
        layer = np.zeros((height, width), np.float32)
        for _ in range(int(rng.integers(2, 4))):
            layer = np.maximum(layer, _streaks(height, width, rng, rng.uniform(0.002, 0.008), int(rng.integers(20, 50)),
                                               angle + rng.uniform(-8, 8), int(rng.integers(1, 3)),
                                               rng.uniform(0.5, 1.0)) * rng.uniform(0.5, 0.9))
        return layer, rng.uniform(0.0, 0.15)
    if style == "real":
        layer = _streaks(height, width, rng, rng.uniform(0.01, 0.04), int(rng.integers(5, 15)), angle, 1,
                         rng.uniform(0.7, 1.5)) * rng.uniform(0.15, 0.45)
        return layer, rng.uniform(0.0, haze)
    raise ValueError(f"unknown rain style {style!r} (choose from {', '.join(STYLES)})")


def add_rain(clean: np.ndarray, rng: np.random.Generator, style: str | None = None,
             haze: float = REAL_HAZE) -> np.ndarray:
    """float RGB in [0, 1] -> the same scene with rain: haze veil, then streaks added, clipped."""
    style = style or str(rng.choice(STYLES, p=STYLE_WEIGHTS))
    layer, veil = rain_layer(*clean.shape[:2], rng, style, haze)
    veiled = clean * (1.0 - veil) + veil * rng.uniform(0.7, 0.95)
    return np.clip(veiled + layer[:, :, None], 0.0, 1.0).astype(np.float32)


def rain_of_pair(rainy: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """The rain layer of a training pair: what rain added (Rain100/Rain200 add their streaks)."""
    return np.clip(rainy - clean, 0.0, 1.0)


def transplant_rain(clean: np.ndarray, layer: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another pair's rain layer, scaled (light to heavy), added over a clean photograph."""
    return np.clip(clean + layer * rng.uniform(0.3, 1.0), 0.0, 1.0).astype(np.float32)
