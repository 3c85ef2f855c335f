"""Regenerate an example pair: synthetic rain (seed 0) over scikit-image's `chelsea`, a photo held
out of training. Run: python examples/make_examples.py

The committed rainy-chelsea.png was made by the first version of the rain generator; this script
now draws the "light" style of data/synthetic.py, so its output differs from the committed file."""

from pathlib import Path

import numpy as np

from derain.data.io import Image, write_image
from derain.data.pairs import load_pairs

HERE = Path(__file__).parent

if __name__ == "__main__":
    rainy, clean = load_pairs("synthetic", seed=0)[0]  # the same pair `derain eval --data synthetic` scores first
    write_image(HERE / "rainy-chelsea.png", Image(rainy, dtype=np.dtype(np.uint8)))
    write_image(HERE / "clean-chelsea.png", Image(clean, dtype=np.dtype(np.uint8)))
