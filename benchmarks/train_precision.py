"""What the faster training options cost in PSNR: the same run (same seed, same batches, same
steps, from scratch) in float32 and with each option of benchmarks/train_speed.py that the trainer
offers, scored by the run's own validation (held-out scenes of the train pairs). Equal steps,
not equal time: an option that loses nothing here gains its speed-up on top.

    python benchmarks/train_precision.py [--steps 2000] [--data DATA]
        -> benchmarks/results/train_precision.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from derain.atomic import atomic_path
from derain.data.datasets import DataSpec
from derain.train import TrainSettings, train
from derain.data.pairs import add_data_option

OPTIONS = {"float32": {}, "bf16 autocast": {"bf16": True}, "channels-last": {"channels_last": True}}
RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = DataSpec(pairs=(str(args.data / "Rain200H/train"), str(args.data / "GT-RAIN/train")),
                    clean=(str(args.data / "clean"),), rain_layers=(str(args.data / "Rain200H/train"),),
                    mix=(2, 1, 1, 0.3))
    results = {}
    for name, option in OPTIONS.items():
        settings = TrainSettings(model="realtime", data=spec, steps=args.steps, val_every=args.steps,
                                 save_every=args.steps, **option)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as run:
            log = train(settings, Path(run))
        final = log["val"][-1]
        results[name] = {"val_psnr": final["psnr"], "val_ssim": final["ssim"], "final_loss": log["train"][-1]["loss"],
                         "minutes": round((time.perf_counter() - started) / 60, 1)}
        print(name, results[name], flush=True)
    reference = results["float32"]["val_psnr"]
    for entry in results.values():
        entry["psnr_vs_float32_db"] = round(entry["val_psnr"] - reference, 3)
    result = {"command": f"python benchmarks/train_precision.py --steps {args.steps}", "model": "realtime",
              "steps": args.steps, "batch": 8, "patch": 64, "threads": 1,
              "validation": "held-out scenes of Rain200H/train and GT-RAIN/train (6 pairs)",
              "input_psnr": log["val"][-1]["input_psnr"], "options": results}
    with atomic_path(RESULTS / "train_precision.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
