"""Training step time on this CPU with bf16 autocast, channels-last and torch.compile, against the
plain float32 step, measured in the same run (round robin, one thread, medians).

    python benchmarks/train_speed.py [--model realtime] [--patch 64] [--steps 12]
        -> benchmarks/results/train_speed.json

Keep an option only if it is faster; then check it costs no PSNR (it is off by default otherwise).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from derain.atomic import atomic_path
from derain.model import build_model


def step_fn(model, optimizer, bf16: bool, channels_last: bool):  # noqa: ANN001, ANN201
    def step(rainy: torch.Tensor, clean: torch.Tensor) -> None:
        if channels_last:
            rainy = rainy.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.l1_loss(model(rainy).float(), clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="realtime")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (needs a C++ compiler)")
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "results" / "train_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants = {"float32": (False, False, False), "bf16 autocast": (True, False, False),
                "channels-last": (False, True, False)}
    if args.compile:
        variants["torch.compile"] = (False, False, True)
    steps = {}
    for name, (bf16, channels_last, compiled) in variants.items():
        torch.manual_seed(0)
        model = build_model(args.model).train()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        runner = torch.compile(model) if compiled else model
        steps[name] = step_fn(runner, optimizer, bf16, channels_last)
    rainy, clean = torch.rand(2, args.batch, 3, args.patch, args.patch)
    times: dict[str, list[float]] = {name: [] for name in steps}
    compile_seconds = {}
    for name, step in steps.items():  # warm-up (and compilation)
        started = time.perf_counter()
        step(rainy, clean)
        step(rainy, clean)
        compile_seconds[name] = round(time.perf_counter() - started, 1)
    for _ in range(args.steps):
        for name, step in steps.items():
            started = time.perf_counter()
            step(rainy, clean)
            times[name].append(time.perf_counter() - started)
    base = float(np.median(times["float32"]))
    result = {"model": args.model, "patch": args.patch, "batch": args.batch, "threads": 1,
              "variants": {name: {"median_s": round(float(np.median(t)), 4),
                                  "speed_vs_float32": round(base / float(np.median(t)), 3),
                                  "first_two_steps_s": compile_seconds[name]} for name, t in times.items()}}
    with atomic_path(args.output) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
