"""Both cores for one training run: two DDP processes (torchrun, gloo, one thread each, batch 4
each) against one process with two threads (batch 8): the same global batch, measured in the
same run, alternated, as training samples per second between step 20 and the last step (so
start-up, data decoding and process-group set-up are left out).

    python benchmarks/train_ddp.py [--steps 200] [--repeats 3] [--data DATA]
        -> benchmarks/results/train_ddp.json

Only meaningful on an otherwise idle machine: each side wants both cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from derain.atomic import atomic_path
from derain.data.pairs import add_data_option

RESULTS = Path(__file__).parent / "results"
SKIP = 20  # steps of warm-up left out


def samples_per_second(run: Path, batch: int) -> float:
    rows = json.loads((run / "log.json").read_text())["train"]
    first = next(r for r in rows if r["step"] >= SKIP)
    last = rows[-1]
    return (last["step"] - first["step"]) * batch / (last["seconds"] - first["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    train = ["train", "--model", "realtime", "--pairs", str(args.data / "Rain200H/train"), "--clean",
             str(args.data / "clean"), "--mix", "1,1,0,0", "--steps", str(args.steps), "--val-every", "100000",
             "--save-every", "100000", "--bf16", "--threads"]
    sides = {"one process, two threads": [sys.executable, "-m", "derain", *train, "2", "--batch", "8"],
             "torchrun 2 x one thread (gloo)": [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                                                "2", "-m", "derain", *train, "1", "--batch", "4"]}
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for repeat in range(args.repeats):
        for name, command in sides.items():
            with tempfile.TemporaryDirectory() as run:
                subprocess.run([*command, "-o", run], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                rates[name].append(round(samples_per_second(Path(run), 8), 2))
            print(repeat, name, rates[name][-1], flush=True)
    medians = {name: float(np.median(r)) for name, r in rates.items()}
    one, ddp = medians.values()
    result = {"command": f"python benchmarks/train_ddp.py --steps {args.steps} --repeats {args.repeats}",
              "model": "realtime", "patch": 64, "global_batch": 8, "precision": "bf16 autocast",
              "samples_per_s": {name: {"median": medians[name], "runs": rates[name]} for name in sides},
              "ratio_ddp_over_one_process": round(ddp / one, 3)}
    with atomic_path(RESULTS / "train_ddp.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
