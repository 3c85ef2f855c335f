"""Training options at equal *time*: the same run (same seed, data and validation scenes, from
scratch) with each option, each given the same time budget, scored by the run's own validation.
An option that is faster per step but worse per step wins here only if its extra steps make up.

The arms run at once, one thread each (`derain train --threads 1 --time-budget B`), so whatever
else loads the machine loads them alike. The trainer plans its steps from the CPU time of a probe
step (not wall time), so "equal time" is equal CPU time per arm.

    python benchmarks/train_equal_time.py [--budget 30m] [--arms bf16 float32 bf16+256px]
        [--data DATA] -> benchmarks/results/train_equal_time.json and .png (+ runs/equal-time/<arm>/)
    python benchmarks/train_equal_time.py --resume ...   # after a stop: each unfinished arm resumes exactly
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from derain.atomic import atomic_path
from derain.data.pairs import add_data_option

RESULTS = Path(__file__).parent / "results"
# The long run's recipe (benchmarks/results/training/long-run) at 64 px, and one change per arm.
ARMS = {
    "bf16": ["--bf16"],
    "float32": [],
    "bf16+compile": ["--bf16", "--compile"],
    "bf16+256px": ["--bf16", "--patches", "64:0.8,256:0.2"],  # 256 px for the last 20% of the time
}


def data_options(data: Path) -> list[str]:
    return ["--pairs", str(data / "Rain200H/train"), str(data / "DID-MDN-sample/train"), str(data / "GT-RAIN/train"),
            "--clean", str(data / "clean"), "--rain-layers", str(data / "Rain200H/train"),
            str(data / "DID-MDN-sample/train"), "--mix", "1,1.5,1,0.25", "--align-tone", str(data / "GT-RAIN/train")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    parser.add_argument("--budget", default="30m")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--runs", type=Path, default=Path("runs/equal-time"))
    parser.add_argument("--resume", action="store_true", help="resume the arms' runs (finished ones are kept)")
    args = parser.parse_args()
    derain = [sys.executable, "-m", "derain"]
    common = ["train", "--model", "realtime", *data_options(args.data), "--lr", "1e-3", "--val-every", "2000",
              "--save-every", "2000", "--time-budget", args.budget, "--threads", "1"]
    processes = {}
    for arm in args.arms:
        folder = args.runs / arm
        if args.resume and (folder / "final.pt").is_file():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        command = ["train", "--resume"] if args.resume else [*common, *ARMS[arm]]
        with open(folder / "train.out", "ab") as out:
            processes[arm] = subprocess.Popen([*derain, *command, "-o", str(folder)], stdout=out,
                                              stderr=subprocess.STDOUT)
    results = {}
    for arm in args.arms:
        if arm in processes and processes[arm].wait() != 0:
            raise SystemExit(f"arm {arm} failed: see {args.runs / arm / 'train.out'}")
        log = json.loads((args.runs / arm / "log.json").read_text())
        final, segments = log["val"][-1], log["segments"]
        results[arm] = {"options": " ".join(ARMS[arm]), "steps": log["schedule"]["steps"],
                        "patch_phases": log["schedule"]["phases"], "wall_s": sum(s["wall_s"] for s in segments),
                        "cpu_s": sum(s["cpu_s"] for s in segments), "val_psnr": final["psnr"], "val_ssim": final["ssim"],
                        "sources": {name: round(s["psnr"], 3) for name, s in final["sources"].items()},
                        "curve": [[row["step"], round(row["psnr"], 3)] for row in log["val"]]}
        print(arm, results[arm], flush=True)
    reference = results[args.arms[0]]["val_psnr"]
    for entry in results.values():
        entry[f"psnr_vs_{args.arms[0]}_db"] = round(entry["val_psnr"] - reference, 3)
    result = {"command": f"python benchmarks/train_equal_time.py --budget {args.budget} --arms {' '.join(args.arms)}",
              "model": "realtime", "budget": args.budget, "threads_per_arm": 1, "arms_at_once": len(args.arms),
              "validation": "the run's held-out scenes: Rain200H/train, DID-MDN-sample background 5, GT-RAIN unnamed02",
              "input_psnr": final["input_psnr"], "arms": results}
    with atomic_path(RESULTS / "train_equal_time.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    plot(results, args.budget, RESULTS / "train_equal_time.png")


def plot(results: dict, budget: str, path: Path) -> None:
    """Validation PSNR against the share of the time budget spent (steps are spread evenly over it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for arm, entry in results.items():
        steps, psnr = zip(*entry["curve"])
        axes.plot([step / entry["steps"] for step in steps], psnr, marker="o", label=f"{arm} ({entry['steps']} steps)")
    axes.set(xlabel=f"share of the {budget} CPU budget", ylabel="validation PSNR (dB)",
             title="Training options at equal CPU time (one thread each, from scratch)")
    axes.grid(alpha=0.3)
    axes.legend()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)


if __name__ == "__main__":
    main()
