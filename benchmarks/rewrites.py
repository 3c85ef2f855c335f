"""Each export rewrite that cut the `realtime` graph's activation traffic, measured on its own: for
every commit in STEPS (the commit before the rewrites, then one commit per rewrite), that commit's
own code exports the bundled checkpoint, and this checkout measures
- the activation traffic of the 1280x720 FP32 and FP16 ONNX (export/traffic.py's count);
- ONNX Runtime's FP32 time at 1280x720, all steps and a plain CNN in one round robin (one thread,
  medians), as speed per FLOP against the plain CNN (efficiency.speed_per_flop: per round, then the
  median over the rounds);
- Y-PSNR of FP32 and FP16 on the real test pairs of Rain100H and GT-RAIN at 640x360 (centre crops,
  reflect-padded where smaller, as `derain validate`), and how far each 720p output is from the step
  before (the rewrites keep the weights and the outputs: only rounding may differ; the last step
  pads 720 rows to 736 instead of 768, which changes the 720p output, not the 640x360 one, whose
  canvas stays 384 rows: benchmarks/quality.py scores that step on every test split).

    python benchmarks/rewrites.py --data DATA [--runs 25]   # -> results/rewrites.json, rewrites.md

DATA holds <dataset>/test/{rain,norain}/. Needs this repository's git history (git archive).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from derain.atomic import atomic_path
from derain.data.pairs import load_pairs
from derain.export.traffic import onnx_traffic
from derain.validate.report import validate
from efficiency import conv_flops, export_plain, plain_cnn, round_robin, session, speed_per_flop  # benchmarks/efficiency.py

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
STEPS = (  # (label, commit): each commit adds one rewrite to the one before
    ("before", "986973c"),
    ("LayerNorm, Softmax FP16 in and out", "305c978"),
    ("q, k, v projections in attention's layout", "a251a7c"),
    ("feed-forward in one layout, one Gelu op", "b72c428"),
    ("NAB sort on (L, K), not (L, C)", "277d9dd"),
    ("decoder: ConvTranspose + skip conv, no concat", "f6b391c"),
    ("stem: one stride-2 conv of the image", "5060c13"),
    ("output: one 5x5 conv of the image, one transposed conv of kernel 4", "e64ed0c"),
    ("rain mask: no unweighted variance, Min in FP16", "b4f34c0"),
    ("stages: channels-last in, NCHW out; level 1 from the image", "17dd2d8"),
    ("level 2's input: one stride-4 conv of the image", "6bba4fb"),
    ("MAB: q's bias as a key bias", "aa14cd7"),
    ("canvas 1280x736, the bottleneck pads its own map", "9a4e72e"),
)
SPLITS = ("Rain100H", "GT-RAIN")
# Run inside the step's own tree: export at each size, FP16 beside it, and the step's FLOP count.
EXPORT = """
import json, sys, torch
from derain.export.fp16 import convert_to_fp16
from derain.export.onnx_export import export_onnx
from derain.info import count_flops
from derain.model import load_checkpoint
torch.set_num_threads(1)
model, _ = load_checkpoint(None)
for height, width in ((720, 1280), (360, 640)):
    path = export_onnx(model, f"{sys.argv[1]}/{height}.onnx", height, width)
    convert_to_fp16(path, f"{sys.argv[1]}/{height}.fp16.onnx")
print(json.dumps({"gflops_720p": count_flops("realtime", 720, 1280) / 1e9}))
"""


def export_step(commit: str, folder: Path) -> float:
    """The step's ONNX files in `folder`; returns its GFLOPs per 720p frame."""
    tree = folder / "tree"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    child = subprocess.run([sys.executable, "-c", EXPORT, str(folder)], cwd=tree, capture_output=True, text=True,
                           env={"PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    if child.returncode:
        raise SystemExit(f"{commit}: export failed\n{child.stderr[-2000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])["gflops_720p"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=25, help="rounds of the round robin (medians)")
    args = parser.parse_args()
    pairs = [pair for split in SPLITS for pair in load_pairs(args.data / split / "test")]
    started, rows = time.time(), []
    with tempfile.TemporaryDirectory() as temp:
        folders = {}
        for label, commit in STEPS:
            folders[label] = Path(temp) / commit
            gflops = export_step(commit, folders[label])
            row = {"step": label, "commit": commit, "gflops_720p": round(gflops, 2)}
            for precision, name in (("fp32", "720.onnx"), ("fp16", "720.fp16.onnx")):
                row[f"traffic_{precision}_gb"] = round(onnx_traffic(folders[label] / name).gb, 3)
            report, _ = validate({"fp32": folders[label] / "360.onnx", "fp16": folders[label] / "360.fp16.onnx"},
                                 pairs, max_loss_db=float("inf"), data=", ".join(SPLITS))
            row["psnr_640x360"] = {p: report.precisions[p]["psnr"] for p in ("fp32", "fp16")}
            rows.append(row)
            print(json.dumps(row), flush=True)
        cnn, _ = plain_cnn(np.mean([r["gflops_720p"] for r in rows]) * 1e9, 720, 1280)
        export_plain(cnn, Path(temp) / "cnn.onnx", 720, 1280)
        sessions = {label: session(folders[label] / "720.onnx") for label in folders}
        times = round_robin({**sessions, "plain CNN": session(Path(temp) / "cnn.onnx")}, (1, 3, 720, 1280), args.runs)
        cnn_flops = conv_flops(cnn, 720, 1280)
        frame = np.random.default_rng(0).random((1, 3, 720, 1280), dtype=np.float32)  # outputs vs the step before
        previous = None
        for row in rows:
            row["ort_fp32_720p_s"] = round(float(np.median(times[row["step"]])), 4)
            ratio = speed_per_flop(times[row["step"]], row["gflops_720p"] * 1e9, times["plain CNN"], cnn_flops)
            row["speed_per_flop_vs_cnn"], row["speed_per_flop_quartiles"] = ratio["median"], ratio["quartiles"]
            output = sessions[row["step"]].run(None, {"rainy": frame})[0]
            row["max_abs_vs_step_before"] = None if previous is None else float(np.abs(output - previous).max())
            previous = output
    result = {"command": "python benchmarks/rewrites.py --data DATA", "machine": "2-core x86_64, shared; one thread",
              "plain_cnn_720p_s": round(float(np.median(times["plain CNN"])), 4), "runs": args.runs, "psnr_pairs": f"{len(pairs)} test pairs of {', '.join(SPLITS)}",
              "steps": rows, "seconds": round(time.time() - started, 1)}
    with atomic_path(RESULTS / "rewrites.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| step | commit | FP16 traffic 720p (GB) | FP32 traffic (GB) | GFLOPs 720p | ORT FP32 720p | speed per FLOP vs plain CNN "
             "| PSNR FP32 / FP16, 640x360 | max abs vs step before |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in rows:
        change = "-" if r["max_abs_vs_step_before"] is None else f"{r['max_abs_vs_step_before']:.1e}"
        lines.append(f"| {r['step']} | {r['commit']} | {r['traffic_fp16_gb']:.2f} | {r['traffic_fp32_gb']:.2f} | {r['gflops_720p']} "
                     f"| {r['ort_fp32_720p_s']:.2f} s | {r['speed_per_flop_vs_cnn']:.3f} | {r['psnr_640x360']['fp32']:.3f} / "
                     f"{r['psnr_640x360']['fp16']:.3f} | {change} |")
    with atomic_path(RESULTS / "rewrites.md") as tmp:
        tmp.write_text(f"`{result['command']}` (plain CNN {result['plain_cnn_720p_s']} s; PSNR on {result['psnr_pairs']})\n\n"
                       + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
