"""How to calibrate INT8: PSNR lost against FP32 by each calibration choice of derain quantize,
measured on *train* pairs (the choice must not be tuned on the test pairs that benchmarks/int8.py
reports). Activation ranges from MinMax or from a percentile of the calibration activations; the
image-facing convolutions (3 channels in, 3 out) quantized or left in float.

    python benchmarks/int8_calibration.py [--data DATA]   # -> results/int8-calibration.json
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from derain.atomic import atomic_path
from derain.calib.quantize import quantize_onnx
from derain.data.pairs import load_pairs
from derain.export.onnx_export import export_onnx
from derain.model import bundled_checkpoint_path
from derain.validate.report import validate
from int8 import CALIBRATION, CALIBRATION_FRAMES, RESULTS, SIZE, setup

EVALUATION = ("Rain200H/train", "GT-RAIN/train")
VARIANTS = {  # name: (percentile, 100 for MinMax; image-facing convolutions in float)
    "minmax": (100.0, False),
    "minmax, float image convs": (100.0, True),
    "p99.9": (99.9, False),
    "p99.99": (99.99, False),
    "p99.999": (99.999, False),
    "p99.99, float image convs": (99.99, True),
}


def main() -> int:
    started = time.time()
    args, model, calibration = setup(__doc__)
    pairs = [(rainy, clean) for folder in EVALUATION for rainy, clean in load_pairs(args.data / folder)
             if min(rainy.shape[:2]) >= SIZE]
    with tempfile.TemporaryDirectory() as folder:
        fp32 = export_onnx(model, Path(folder) / "model.onnx", SIZE, SIZE)
        models = {"fp32": fp32}
        for index, (name, (percentile, float_convs)) in enumerate(VARIANTS.items()):
            models[name] = quantize_onnx(fp32, calibration, Path(folder) / f"int8-{index}.onnx", percentile,
                                         reference=False, float_image_convs=float_convs)
        report, _ = validate(models, pairs, max_loss_db=np.inf, data=" + ".join(EVALUATION))
    result = {
        "command": "python benchmarks/int8_calibration.py",
        "checkpoint": bundled_checkpoint_path().name,
        "data": f"{len(pairs)} train pairs of {', '.join(EVALUATION)} at least {SIZE} px, centre crops of {SIZE}x{SIZE}",
        "calibration": f"{CALIBRATION_FRAMES} rainy crops of {' and '.join(CALIBRATION)}",
        "fp32_psnr": report.precisions["fp32"]["psnr"],
        "int8_loss_db": {name: report.precisions[name]["loss_db"] for name in VARIANTS},
        "seconds": round(time.time() - started, 1),
    }
    with atomic_path(RESULTS / "int8-calibration.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["int8_loss_db"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
