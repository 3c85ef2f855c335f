"""Regenerate the bundled example: synthetic rain (seed 0) over scikit-image's `chelsea`, a photo
held out of training. Run: python examples/make_examples.py"""

from pathlib import Path

from derain.data.datasets import load_pairs
import numpy as np

from derain.data.io import Image, write_image

HERE = Path(__file__).parent

if __name__ == "__main__":
    rainy, clean = load_pairs("synthetic", seed=0)[0]  # the same pair `derain eval` scores first
    write_image(HERE / "rainy-chelsea.png", Image(rainy, dtype=np.dtype(np.uint8)))
    write_image(HERE / "clean-chelsea.png", Image(clean, dtype=np.dtype(np.uint8)))
