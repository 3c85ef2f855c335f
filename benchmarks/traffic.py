"""Activation traffic per frame of each config's exported graph at 256x256, 640x360 and 1280x720, for
the FP32, FP16 and INT8 ONNX, beside its GFLOPs: what `derain info --onnx` prints, for the whole
matrix. The count is export/traffic.py's: every op read and written once, unfused, at the graph's
own dtypes (an upper bound of what a fused TensorRT engine moves); Reshape, Squeeze, Unsqueeze,
Flatten, Identity, Constant and Shape free; in the INT8 graph QuantizeLinear / DequantizeLinear
are folded into the ops they feed, as TensorRT fuses them, and INT8 tensors count 1 byte.

    python benchmarks/traffic.py [--configs realtime,edge]   # -> results/traffic.json, traffic.md

The INT8 graph's Q/DQ placement does not depend on its ranges, so it is quantized from one random
frame (--calib-only) rather than the reference crops: minutes less at 720p, the same graph.
`realtime` uses the bundled checkpoint, other configs random weights (the graph is the same).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from derain.atomic import atomic_path
from derain.calib.quantize import quantize_onnx
from derain.export.fp16 import convert_to_fp16
from derain.export.onnx_export import export_onnx
from derain.export.traffic import BANDWIDTH_GBPS, onnx_traffic
from derain.info import count_flops
from derain.model import build_model, load_checkpoint

RESULTS = Path(__file__).parent / "results"
SIZES = ((256, 256), (360, 640), (720, 1280))  # (H, W)
GOAL_GB = {"realtime": 2.5}  # the bound for the 720p FP16 graph (goal 1.5)


def measure(config: str, height: int, width: int, folder: Path) -> dict:
    if config == "realtime":
        model, _ = load_checkpoint(None)
    else:
        torch.manual_seed(0)
        model = build_model(config).eval()
    fp32 = export_onnx(model, folder / f"{config}-{height}.onnx", height, width)
    frame = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)
    paths = {"fp32": fp32, "fp16": convert_to_fp16(fp32, fp32.with_suffix(".fp16.onnx")),
             "int8": quantize_onnx(fp32, frame, fp32.with_suffix(".int8.onnx"), reference=False)}
    row = {"config": config, "size": f"{width}x{height}", "gflops": round(count_flops(config, height, width) / 1e9, 2)}
    for precision, path in paths.items():
        traffic = onnx_traffic(path)
        row[precision] = traffic.to_dict()
    return row


def table(rows: list[dict]) -> str:
    devices = list(BANDWIDTH_GBPS)
    lines = ["| config | size | GFLOPs | FP32 GB | FP16 GB | INT8 GB (Q/DQ folded) | FP16 at " + " / ".join(devices)
             + " | largest FP16 ops (GB) |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        ms = " / ".join(f"{r['fp16']['ms_at_full_bandwidth'][d]:.0f} ms" for d in devices)
        ops = ", ".join(f"{op} {gb:.2f}" for op, gb in list(r["fp16"]["by_op_gb"].items())[:4])
        lines.append(f"| {r['config']} | {r['size']} | {r['gflops']} | {r['fp32']['gb']:.2f} | {r['fp16']['gb']:.2f} "
                     f"| {r['int8']['gb']:.2f} | {ms} | {ops} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="realtime,edge")
    parser.add_argument("-o", "--output", type=Path, default=RESULTS / "traffic.json")
    args = parser.parse_args()
    started, rows = time.time(), []
    with tempfile.TemporaryDirectory() as folder:
        for config in args.configs.split(","):
            for height, width in SIZES:
                rows.append(measure(config, height, width, Path(folder)))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    result = {"command": "python benchmarks/traffic.py --configs " + args.configs,
              "count": "export/traffic.py: unfused, at the graph's dtypes; Reshape/Squeeze/Unsqueeze/Flatten/Identity/"
                       "Constant/Shape free; INT8: Q/DQ folded into the ops they feed, INT8 tensors 1 byte",
              "bandwidth_gbps": BANDWIDTH_GBPS, "goal_gb_720p_fp16": GOAL_GB, "rows": rows,
              "seconds": round(time.time() - started, 1)}
    with atomic_path(args.output) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    with atomic_path(args.output.with_suffix(".md")) as tmp:
        tmp.write_text(f"Activation traffic per frame (`{result['command']}`)\n\n{table(rows)}\n")
    print(table(rows))


if __name__ == "__main__":
    main()
