"""What TensorRT's TF32 would do to the bundled checkpoint, simulated on the CPU: TF32 rounds the
inputs of FP32 MatMuls and convolutions to 10-bit mantissas and accumulates in FP32 (NvInfer.h,
BuilderFlag::kTF32). Two cases:
- "sort similarity": an FP16 or INT8 engine, whose FP32 MatMuls are the NAB's similarity (the sort
  keys come from its argmax) and the prefix-sum MatMuls (exact under TF32 by construction,
  tests/test_sorting.py); so only the similarity is rounded;
- "everything": an FP32 engine, every Conv, Linear and MatMul rounded.
Measured: NAB sort keys that change on real rain frames at 1280x720, and Y-PSNR on every pair of
the real test splits (Rain100L, Rain100H, GT-RAIN), against plain FP32. The builder's TF32 default
(engines/build.py, TF32_DEFAULT) follows from it.

    python benchmarks/tf32.py [--data DATA]   # -> benchmarks/results/tf32.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from tqdm import tqdm

from derain.atomic import atomic_path
from derain.data.io import read_image
from derain.data.metrics import psnr_y
from derain.data.pairs import pair_paths
from derain.model import bundled_checkpoint_path, load_checkpoint
from derain.data.pairs import add_data_option

RESULTS = Path(__file__).parent / "results"
SPLITS = ("Rain100L", "Rain100H", "GT-RAIN")
ROUNDED = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm, F.linear, F.conv2d}


def tf32(t: torch.Tensor) -> torch.Tensor:
    """float32 rounded to the nearest TF32 value (10 mantissa bits)."""
    bits = t.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


class TF32Inputs(TorchFunctionMode):
    """Round every float32 tensor argument of MatMuls, Linears and convolutions to TF32."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func in ROUNDED:
            round_ = lambda a: tf32(a) if isinstance(a, torch.Tensor) and a.dtype == torch.float32 else a  # noqa: E731
            args, kwargs = [round_(a) for a in args], {k: round_(v) for k, v in kwargs.items()}
        return func(*args, **kwargs)


@contextmanager
def rounded(model: torch.nn.Module, case: str, keys: list[torch.Tensor]):
    """Run `model` with TF32 where `case` says; every NAB's sort keys are appended to `keys`."""
    originals = []
    for module in model.nonlocal_attentions():
        compute = module.sort_keys

        def sort_keys(tokens, compute=compute):  # noqa: ANN001, ANN202
            with TF32Inputs() if case == "sort similarity" else nullcontext():
                cluster_ids, found = compute(tokens)
            keys.append(found)
            return cluster_ids, found

        originals.append((module, compute))
        module.sort_keys = sort_keys
    try:
        with TF32Inputs() if case == "everything" else nullcontext():
            yield
    finally:
        for module, compute in originals:
            module.sort_keys = compute


def run(model: torch.nn.Module, rgb: np.ndarray, case: str) -> tuple[np.ndarray, list[torch.Tensor]]:
    keys: list[torch.Tensor] = []
    x = torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None]
    with torch.no_grad(), rounded(model, case, keys):
        out = model(x)[0].clamp(0, 1).numpy().transpose(1, 2, 0)
    return np.round(out * 255) / 255, keys  # uint8 outputs, as the papers score


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    model, _ = load_checkpoint()
    model.eval()
    cases = ("plain", "sort similarity", "everything")
    # Sort keys at 1280x720: the GT-RAIN test frames scaled to the stream size.
    frames = [read_image(rainy).rgb for rainy, _ in pair_paths(args.data / "GT-RAIN" / "test")]
    flips = {case: [0, 0] for case in cases[1:]}  # changed, total
    for rgb in tqdm(frames, desc="720p sort keys", unit="frame"):
        frame = F.interpolate(torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None], size=(720, 1280),
                              mode="bilinear").numpy()[0].transpose(1, 2, 0)
        _, reference = run(model, frame, "plain")
        for case in cases[1:]:
            _, keys = run(model, frame, case)
            flips[case][0] += sum(int((a != b).sum()) for a, b in zip(keys, reference))
            flips[case][1] += sum(a.numel() for a in reference)
    psnr: dict[str, dict[str, float]] = {case: {} for case in cases}
    for split in SPLITS:
        pairs = pair_paths(args.data / split / "test")
        scores: dict[str, list[float]] = {case: [] for case in cases}
        for rainy, clean in tqdm(pairs, desc=split, unit="pair"):
            rgb, target = read_image(rainy).rgb, read_image(clean).rgb
            for case in cases:
                scores[case].append(psnr_y(run(model, rgb, case)[0], target))
        for case in cases:
            psnr[case][split] = round(float(np.mean(scores[case])), 4)
    result = {
        "command": "python benchmarks/tf32.py",
        "checkpoint": bundled_checkpoint_path().name,
        "simulation": "float32 MatMul/Linear/Conv inputs rounded to TF32 (10-bit mantissa, nearest), FP32 sums",
        "sort_keys_720p": {case: {"changed": c, "tokens": t, "fraction": c / t} for case, (c, t) in flips.items()},
        "frames_720p": f"{len(frames)} GT-RAIN test frames scaled to 1280x720",
        "psnr_y": psnr,
        "loss_db": {case: {s: round(psnr["plain"][s] - psnr[case][s], 4) for s in SPLITS} for case in cases[1:]},
        "seconds": round(time.time() - started, 1),
    }
    with atomic_path(RESULTS / "tf32.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("sort_keys_720p", "loss_db")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
