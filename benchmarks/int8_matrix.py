"""INT8 loss against FP32 for every calibration source a user might give (rows) on every real
test split (columns), at one resolution: the matrix behind `derain quantize`'s default ranges
(shipped reference crops and synthetic heavy rain, widened by the user's frames). Each cell is the
mean Y-PSNR loss as `derain validate` measures it (centre crops of the ONNX's size, reflect-padded
where an image is smaller). FP16 beside it; one row quantized the way it was before (the light
clip's ranges alone) shows what the default fixes.

    python benchmarks/int8_matrix.py --data DATA --height 360 --width 640
    python benchmarks/int8_matrix.py --data DATA --height 720 --width 1280 --calib-frames 8 --first 20

DATA holds the datasets as <dataset>/<split>/{rain,norain}/ and video/<clip>/<clip>.mp4. Results:
results/int8-matrix-<W>x<H>.json, .md and .png (or -o FILE.json); resumable (cells already in the JSON are kept; a
quantized model is rebuilt only for rows with missing cells), as long as the exported FP32 ONNX is the
same file (its SHA-256 is kept): a new checkpoint or export starts the matrix afresh. One thread:
hours at 720p.
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
from derain.calib.quantize import quantize_onnx
from derain.data.pairs import load_pairs
from derain.export.fp16 import convert_to_fp16
from derain.export.manifest import file_sha256
from derain.export.onnx_export import export_onnx
from derain.model import bundled_checkpoint_path, load_checkpoint
from derain.validate.report import validate

RESULTS = Path(__file__).parent / "results"
# row: calibration source under DATA (a video, a folder, or folders whose images are pooled by a
# name filter); None = the toolkit's default when the user gives nothing.
SOURCES = {
    "light real clip (NTURain ra1)": "video/NTURain-real-ra1/ra1_Rain.mp4",
    "real clip (NTURain rb2)": "video/NTURain-real-rb2/rb2_Rain.mp4",
    "Rain200H train": "Rain200H/train/rain",
    "GT-RAIN train": "GT-RAIN/train/rain",
    "DID-MDN light only": ("DID-MDN-sample/train/rain", "light_"),
    "clean photos (no rain)": ("clean", ""),
    "nothing (default)": None,
}
BEFORE = "light real clip, its ranges alone (before)"
SPLITS = ("Rain100L", "Rain100H", "GT-RAIN", "SPA-Data")


def calibration_frames(data: Path, source, count: int, height: int, width: int, pool: Path) -> np.ndarray | None:
    if source is None:
        return None
    if isinstance(source, tuple):  # pool the matching images of a folder tree into one folder
        folder, prefix = source
        pool.mkdir(parents=True, exist_ok=True)
        for image in sorted((data / folder).rglob(f"{prefix}*")):
            if image.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
                target = pool / f"{image.parent.name}-{image.name}"
                if not target.exists():
                    target.symlink_to(image.resolve())  # a relative DATA would dangle from the pool
        return sample_frames(pool, count, height, width)
    return sample_frames(data / source, count, height, width)


def table(result: dict) -> str:
    """The matrix as Markdown: one row per calibration source, the worst cell of the default rows
    and each column's spread across them underneath."""
    size = f"{result['input'][3]}x{result['input'][2]}"
    lines = [f"| INT8 at {size}, calibrated on | " + " | ".join(f"{s}/test" for s in SPLITS) + " |",
             "| --- |" + " ---: |" * len(SPLITS)]
    for row in [*SOURCES, BEFORE, "fp16"]:
        cells = result["loss_db"].get(row, {})
        name = "FP16 (no calibration)" if row == "fp16" else row
        lines.append(f"| {name} | " + " | ".join(f"{cells[s]:+.3f}" if s in cells else "" for s in SPLITS) + " |")
    spreads = column_spreads(result)
    if spreads:
        lines.append("| spread of the first seven rows (max - min) | "
                     + " | ".join(f"{spreads[s]:.3f}" for s in SPLITS) + " |")
    return "\n".join(lines) + "\n"


def column_spreads(result: dict) -> dict[str, float]:
    """Per split, max - min of the loss across the default method's rows that are complete."""
    done = [row for row in SOURCES if all(s in result["loss_db"].get(row, {}) for s in SPLITS)]
    return {s: round(max(result["loss_db"][r][s] for r in done) - min(result["loss_db"][r][s] for r in done), 4)
            for s in SPLITS} if done else {}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [*SOURCES, BEFORE, "fp16"]
    cells = np.array([[result["loss_db"].get(row, {}).get(split, np.nan) for split in SPLITS] for row in rows])
    figure, axis = plt.subplots(figsize=(7.5, 4.4))
    image = axis.imshow(np.clip(cells, 0, 1), cmap="Reds", vmin=0, vmax=1, aspect="auto")
    for (i, j), value in np.ndenumerate(cells):
        if not np.isnan(value):
            axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                      color="white" if value > 0.6 else "black")
    axis.set_xticks(range(len(SPLITS)), [f"{s}/test" for s in SPLITS])
    axis.set_yticks(range(len(rows)), [f"INT8, calib: {r}" if r in SOURCES else r for r in rows], fontsize=8)
    axis.set_title(f"dB lost against FP32 at {result['input'][3]}x{result['input'][2]} (colour clipped at 1 dB)")
    figure.colorbar(image, ax=axis, fraction=0.03)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--calib-frames", type=int, default=32, help="frames per calibration source")
    parser.add_argument("--first", type=int, help="only the first N pairs of each split (names sorted)")
    parser.add_argument("-o", "--output", type=Path, help="results JSON (default results/int8-matrix-<W>x<H>.json)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = args.output or RESULTS / f"int8-matrix-{args.width}x{args.height}.json"
    result = json.loads(out.read_text()) if out.exists() else {"loss_db": {}, "fp32_psnr": {}}
    result.update(command=" ".join(["python benchmarks/int8_matrix.py", *sys.argv[1:]]).replace(str(args.data), "DATA"),
                  checkpoint=bundled_checkpoint_path().name, input=[1, 3, args.height, args.width],
                  calibration_frames=args.calib_frames, pairs_per_split=args.first or "all",
                  scoring="mean Y-PSNR of FP32 minus that of the INT8/FP16 model, centre crops of the input size")
    started, seconds_before = time.time(), result.get("seconds", 0)  # a resumed matrix adds its earlier runs

    def save() -> None:
        result["seconds"] = round(seconds_before + time.time() - started, 1)
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
        with atomic_path(out.with_suffix(".md")) as tmp:
            tmp.write_text(table(result))
        plot(result, out.with_suffix(".png"))

    model, _ = load_checkpoint()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        fp32 = export_onnx(model, folder / "model.onnx", args.height, args.width)
        graph = file_sha256(fp32)
        if result.get("fp32_onnx_sha256") != graph:  # cells of another graph: start afresh
            result.update(loss_db={}, fp32_psnr={}, fp32_onnx_sha256=graph)
            seconds_before = 0
        models = {"fp32": fp32, "fp16": convert_to_fp16(fp32, folder / "model.fp16.onnx")}
        rows = {**SOURCES, BEFORE: SOURCES["light real clip (NTURain ra1)"]}
        for index, (row, source) in enumerate(rows.items()):
            if all(split in result["loss_db"].get(row, {}) for split in SPLITS):
                continue
            frames = calibration_frames(args.data, source, args.calib_frames, args.height, args.width,
                                        folder / f"pool-{index}")
            models[row] = quantize_onnx(fp32, frames, folder / f"int8-{index}.onnx", reference=row != BEFORE)
        for split in SPLITS:
            pending = {name: path for name, path in models.items()
                       if name == "fp32" or split not in result["loss_db"].get(name, {})}
            if len(pending) == 1:
                continue
            pairs = load_pairs(args.data / split / "test")[: args.first]
            report, _ = validate(pending, pairs, max_loss_db=np.inf, data=f"{split}/test")
            result["fp32_psnr"][split] = report.precisions["fp32"]["psnr"]
            for name, entry in report.precisions.items():
                if name != "fp32":
                    result["loss_db"].setdefault(name, {})[split] = entry["loss_db"]
            save()
            print(split, json.dumps({name: result["loss_db"][name].get(split) for name in pending if name != "fp32"}))
    default = [result["loss_db"][row][split] for row in SOURCES for split in SPLITS]
    result["default_worst_db"] = max(default)
    result["default_column_spread_db"] = column_spreads(result)
    save()
    print(json.dumps({k: result[k] for k in ("default_worst_db", "default_column_spread_db")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
