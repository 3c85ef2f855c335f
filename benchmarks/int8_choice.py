"""How derain quantize's default was chosen, on *train* pairs only: the INT8 loss against FP32 at
640x360 with the default ranges (shipped reference crops + synthetic heavy rain, widened by the
calibration frames), with the decoder's fuse convolutions quantized or left in FP16, for the two
calibration sources that lost most in the matrix's first run (a light-rain clip, clean photos).
Pairs: the train pairs of DID-MDN (light and medium), Rain200H and GT-RAIN that are not among the
shipped reference crops. The INT8 share of the MACs says what the FP16 convolutions cost.

    python benchmarks/int8_choice.py --data DATA   # -> results/int8-choice.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from derain.atomic import atomic_path
from derain.calib.frames import sample_frames
from derain.calib.quantize import int8_mac_share, quantize_onnx
from derain.calib.ranges import REFERENCE
from derain.data.io import read_image
from derain.data.pairs import pair_paths
from derain.export.onnx_export import export_onnx
from derain.model import load_checkpoint
from derain.validate.report import validate

RESULTS = Path(__file__).parent / "results"
HEIGHT, WIDTH, FRAMES = 360, 640, 32
CALIBRATION = {"light real clip (NTURain ra1)": "video/NTURain-real-ra1/ra1_Rain.mp4",
               "clean photos (Kodak24)": "clean/Kodak24"}
EVALUATION = {"light": ("DID-MDN-sample/train", ("light", "medium")), "heavy": ("Rain200H/train", ("",)),
              "real": ("GT-RAIN/train", ("",))}
VARIANTS = {"fuse convs INT8": False, "fuse convs FP16 (default)": True}


def train_pairs(data: Path, folder: str, prefixes: tuple[str, ...]) -> list:
    shipped = {path.name for path in REFERENCE.rglob("rain/*")}
    return [(read_image(rain).rgb, read_image(clean).rgb) for rain, clean in pair_paths(data / folder)
            if rain.name not in shipped and rain.name.startswith(prefixes)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    model, _ = load_checkpoint()
    result = {"command": "python benchmarks/int8_choice.py --data DATA", "input": [1, 3, HEIGHT, WIDTH],
              "loss_db": {}, "int8_mac_share": {}, "pairs": {}}
    with tempfile.TemporaryDirectory() as folder:
        fp32 = export_onnx(model, Path(folder) / "model.onnx", HEIGHT, WIDTH)
        models = {"fp32": fp32}
        for c, (source, path) in enumerate(CALIBRATION.items()):
            frames = sample_frames(args.data / path, FRAMES, HEIGHT, WIDTH)
            for v, (variant, float_fuse) in enumerate(VARIANTS.items()):
                name = f"{source}, {variant}"
                models[name] = quantize_onnx(fp32, frames, Path(folder) / f"int8-{c}-{v}.onnx",
                                             float_fuse_convs=float_fuse)
                result["int8_mac_share"][variant] = round(int8_mac_share(models[name]), 4)
        for rain, (path, prefixes) in EVALUATION.items():
            pairs = train_pairs(args.data, path, prefixes)
            result["pairs"][rain] = f"{len(pairs)} pairs of {path}"
            report, _ = validate(models, pairs, max_loss_db=np.inf, data=path)
            for name, entry in report.precisions.items():
                if name != "fp32":
                    result["loss_db"].setdefault(name, {})[rain] = entry["loss_db"]
    result["seconds"] = round(time.time() - started, 1)
    with atomic_path(RESULTS / "int8-choice.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["loss_db"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
