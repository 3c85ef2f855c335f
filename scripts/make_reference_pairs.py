"""Cut the reference pairs that ship inside the package (derain/calib/reference/): 256x256 centre
crops of rainy/clean pairs from *train* splits only, grouped by the rain they show. INT8 takes its
activation ranges from their rainy crops (a user's frames may widen them, never narrow them), and
`derain deploy --precision int8` checks its loss on every group before it builds an engine.

    python scripts/make_reference_pairs.py --data DATA   # DATA/<dataset>/train/{rain,norain}/

Re-running it rewrites the same files: the crops are fixed by name, not drawn at random.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from derain.atomic import ensure_directory
from derain.data.io import Image, read_image, write_image
from derain.data.pairs import pair_paths
from derain.validate.report import centre_crop

SIZE = 256
OUT = Path(__file__).resolve().parents[1] / "derain" / "calib" / "reference"
# group: (dataset train folder, rainy file names). Heavy synthetic streaks, light synthetic rain,
# and real rain with a real clean frame (GT-RAIN: one frame of each of four webcam scenes).
GROUPS = {
    "heavy": ("Rain200H/train", ("1.png", "10.png", "11.png")),
    "heavy-dense": ("DID-MDN-sample/train", ("heavy_0.png", "heavy_3.png")),
    "light": ("DID-MDN-sample/train", ("light_1.png", "light_4.png", "medium_2.png")),
    "real": ("GT-RAIN/train", ("Deadwood_0-0-Webcam-R-000.png", "Hualien_0-3-Webcam-R-001.png",
                               "Stick_0-1-Webcam-R-250.png", "Strasburg_2-1-Webcam-R-002.png")),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder holding the datasets' train splits")
    parser.add_argument("--out", type=Path, default=OUT, help="where the groups go")
    args = parser.parse_args()
    for group, (folder, names) in GROUPS.items():
        pairs = {rain.name: (rain, clean) for rain, clean in pair_paths(args.data / folder)}
        for name in names:
            rain, clean = pairs[name]
            for kind, path in (("rain", rain), ("norain", clean)):
                ensure_directory(args.out / group / kind)
                image = read_image(path)
                write_image(args.out / group / kind / name, Image(centre_crop(image.rgb, SIZE, SIZE), image.dtype))
    print(f"wrote {sum(len(names) for _, names in GROUPS.values())} pairs under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
