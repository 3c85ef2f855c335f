"""Is a config fit for real time on a Jetson? Per config: parameters, GFLOPs at 256x256 and 720p,
the 720p ONNX's size, export time and peak memory, ONNX Runtime CPU latency at 256x256 and 720p
next to a plain-CNN reference of about the same FLOPs timed in the same run (round robin, one
thread, medians; speed per FLOP divided by the two FLOP counts, round by round: speed_per_flop), the
costliest op types at 720p, and an Orin NX 16GB FPS estimate.

    python benchmarks/efficiency.py [--configs realtime,edge] [--runs 25]
        -> benchmarks/results/efficiency.json, and the README table on stdout

The Orin estimate: FPS = dense INT8 peak (30 TOPS, GPU only) x achieved fraction / GFLOPs per frame,
with the fraction taken as PLAIN_CNN_FRACTION (what TensorRT reaches on plain 3x3 conv stacks,
docs/design.md) times the config's measured speed per FLOP relative to the
plain CNN on this CPU. It is an estimate: no Jetson was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn
from tqdm import tqdm

from derain.atomic import atomic_path
from derain.export.names import INPUT_NAME, OPSET
from derain.info import count_flops
from derain.model import build_model

RESULTS = Path(__file__).parent / "results" / "efficiency.json"
SIZES = {"256x256": (256, 256), "720p": (720, 1280)}
ORIN_NX_INT8_TOPS = 30.0
PLAIN_CNN_FRACTION = 0.15

EXPORT_CHILD = """
import json, resource, sys, time, torch
from derain.export.onnx_export import export_onnx
from derain.model import build_model
torch.manual_seed(0); torch.set_num_threads(1)
started = time.perf_counter()
export_onnx(build_model(sys.argv[1]).eval(), sys.argv[2], 720, 1280)
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}))
"""


def plain_cnn(flops: float, height: int, width: int) -> tuple[nn.Module, int]:
    """3x3 convs at 32 channels with ReLU and a residual, as many as match `flops` (at least 2)."""
    per_layer = 2 * 9 * 32 * 32 * height * width
    edges = 2 * 2 * 9 * 3 * 32 * height * width
    layers = max(0, round((flops - edges) / per_layer))
    body = [nn.Conv2d(3, 32, 3, padding=1), nn.ReLU()]
    for _ in range(layers):
        body += [nn.Conv2d(32, 32, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*body, nn.Conv2d(32, 3, 3, padding=1)), layers


def export_plain(module: nn.Module, path: Path, height: int, width: int) -> None:
    with torch.no_grad():
        torch.onnx.export(module, (torch.rand(1, 3, height, width),), str(path), opset_version=OPSET,
                          input_names=[INPUT_NAME], dynamo=False)


def session(path: Path, profile: bool = False) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.enable_profiling = profile
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def round_robin(sessions: dict[str, ort.InferenceSession], shape: tuple[int, ...], runs: int) -> dict[str, np.ndarray]:
    """Seconds of each session in each of `runs` rounds, interleaved so load spikes hit all alike:
    the sessions of one round ran within seconds of each other, under the same load."""
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for name, s in sessions.items():  # warm-up
        s.run(None, {s.get_inputs()[0].name: x})
    for _ in tqdm(range(runs), desc="round robin", unit="round", leave=False):
        for name, s in sessions.items():
            started = time.perf_counter()
            s.run(None, {s.get_inputs()[0].name: x})
            times[name].append(time.perf_counter() - started)
    return {name: np.array(t) for name, t in times.items()}


def conv_flops(module: nn.Module, height: int, width: int) -> int:
    """FLOPs of a stack of stride-1, same-padded convs (plain_cnn's) at height x width."""
    return 2 * sum(p.numel() for p in module.parameters() if p.dim() == 4) * height * width


def speed_per_flop(model_s: np.ndarray, model_flops: float, cnn_s: np.ndarray, cnn_flops: float) -> dict:
    """The model's FLOPs per second over the plain CNN's, round by round (each pair timed under the
    same load), as the median and quartiles over the rounds. This CPU is shared: a round's load moves
    both times alike, and the median of the per-round ratios is steadier than a ratio of medians."""
    ratios = (model_flops / model_s) / (cnn_flops / cnn_s)
    low, high = np.quantile(ratios, [0.25, 0.75])
    return {"median": round(float(np.median(ratios)), 3), "quartiles": [round(float(low), 3), round(float(high), 3)]}


def op_profile(path: Path, shape: tuple[int, ...]) -> list[dict]:
    """Share of ONNX Runtime time per op type (one profiled run after a warm-up)."""
    s = session(path, profile=True)
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    s.run(None, {INPUT_NAME: x})
    s.run(None, {INPUT_NAME: x})
    trace = Path(s.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    totals: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"]["op_name"]
            totals[op] = totals.get(op, 0.0) + event["dur"] / 2  # two runs
    whole = sum(totals.values())
    top = sorted(totals.items(), key=lambda kv: -kv[1])[:6]
    return [{"op": op, "share": round(us / whole, 3)} for op, us in top]


def measure(name: str, runs: int, folder: Path) -> dict:
    torch.manual_seed(0)
    model = build_model(name).eval()
    row: dict = {"config": name, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
                 "gflops": {label: round(count_flops(name, h, w) / 1e9, 2) for label, (h, w) in SIZES.items()}}
    onnx_720 = folder / f"{name}-720p.onnx"
    child = subprocess.run([sys.executable, "-c", EXPORT_CHILD, name, str(onnx_720)], capture_output=True,
                           text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    export = json.loads(child.stdout.strip().splitlines()[-1])
    row["onnx_720p_mb"] = round(onnx_720.stat().st_size / 1e6, 2)
    row["export_720p"] = {"seconds": round(export["seconds"], 1), "peak_gb": round(export["peak_gb"], 2)}
    row["latency_s"], row["plain_cnn"] = {}, {}
    for label, (h, w) in SIZES.items():
        path = onnx_720 if label == "720p" else folder / f"{name}-{label}.onnx"
        if label != "720p":
            from derain.export.onnx_export import export_onnx

            export_onnx(model, path, h, w)
        cnn, layers = plain_cnn(row["gflops"][label] * 1e9, h, w)
        cnn_path = folder / f"cnn-{name}-{label}.onnx"
        export_plain(cnn, cnn_path, h, w)
        times = round_robin({"model": session(path), "cnn": session(cnn_path)}, (1, 3, h, w), runs)
        cnn_flops = conv_flops(cnn, h, w)
        ratio = speed_per_flop(times["model"], row["gflops"][label] * 1e9, times["cnn"], cnn_flops)
        row["latency_s"][label] = round(float(np.median(times["model"])), 4)
        row["plain_cnn"][label] = {"conv_layers_32ch": layers + 2, "latency_s": round(float(np.median(times["cnn"])), 4),
                                   "gflops": round(cnn_flops / 1e9, 2),
                                   "speed_per_flop_vs_cnn": ratio["median"], "speed_per_flop_quartiles": ratio["quartiles"]}
    row["op_profile_720p"] = op_profile(onnx_720, (1, 3, 720, 1280))
    fraction = PLAIN_CNN_FRACTION * row["plain_cnn"]["720p"]["speed_per_flop_vs_cnn"]
    row["orin_nx_16gb_estimate"] = {"achieved_fraction": round(fraction, 4),
                                    "fps": round(ORIN_NX_INT8_TOPS * 1e12 * fraction / (row["gflops"]["720p"] * 1e9), 1)}
    return row


def table(rows: list[dict]) -> str:
    lines = ["| config | params | GFLOPs 256² / 720p | 720p ONNX | 720p export | ORT CPU 256² / 720p (1 thread) "
             "| speed per FLOP vs plain CNN, 256² / 720p | top ops at 720p | Orin NX 16GB (est.) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in rows:
        ops = ", ".join(f"{o['op']} {o['share']:.0%}" for o in r["op_profile_720p"][:3])
        lines.append(
            f"| {r['config']} | {r['params_m']}M | {r['gflops']['256x256']} / {r['gflops']['720p']} | "
            f"{r['onnx_720p_mb']} MB | {r['export_720p']['seconds']} s, {r['export_720p']['peak_gb']} GB | "
            f"{r['latency_s']['256x256'] * 1e3:.0f} ms / {r['latency_s']['720p']:.2f} s | "
            f"{r['plain_cnn']['256x256']['speed_per_flop_vs_cnn']} / {r['plain_cnn']['720p']['speed_per_flop_vs_cnn']} | "
            f"{ops} | {r['orin_nx_16gb_estimate']['fps']} FPS |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="realtime,edge")
    parser.add_argument("--runs", type=int, default=25, help="rounds of the round robin per size (medians)")
    parser.add_argument("-o", "--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        rows = [measure(name, args.runs, Path(folder)) for name in args.configs.split(",")]
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared",
              "onnxruntime": ort.__version__, "threads": 1, "runs": args.runs,
              "orin_assumptions": {"dense_int8_tops": ORIN_NX_INT8_TOPS, "plain_cnn_fraction": PLAIN_CNN_FRACTION},
              "configs": rows}
    with atomic_path(args.output) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
