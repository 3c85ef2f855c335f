"""Checkpoints on the line between two weights of one basin, each scored on a run's validation pairs
and by its tone change on real photos: a trade between a fine-tune's gain and its parent's tone
without more training (weight interpolation, "WiSE-FT", Wortsman et al. 2022).

    python benchmarks/interpolate.py --start derain/checkpoints/realtime.pt \
        --end benchmarks/results/training/stage5/final.pt --run benchmarks/results/training/long-run \
        [--alphas 0,0.25,0.5,0.75,1] [--keep runs/interpolation] [-o benchmarks/results/training/interpolation]
        -> interpolation.json, interpolation.png (and, with --keep, each candidate as a-<alpha>.pt)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from run_validation import run_pairs, score_by_source  # noqa: E402
from tone_shift import photos, tone_summary  # noqa: E402
from tqdm import tqdm  # noqa: E402

from derain.atomic import atomic_path  # noqa: E402
from derain.data.pairs import add_data_option  # noqa: E402
from derain.errors import DerainError  # noqa: E402
from derain.model import DerainNet, load_checkpoint, save_checkpoint  # noqa: E402

def interpolate(start: DerainNet, end: DerainNet, alpha: float) -> DerainNet:
    """(1 - alpha) * start + alpha * end, tensor by tensor (weights and NAB centroids alike)."""
    if start.config != end.config:
        raise DerainError(f"--start and --end are different architectures ({start.config.name}, {end.config.name})")
    ends = end.state_dict()
    mixed = {key: torch.lerp(value, ends[key], alpha) if value.is_floating_point() else value
             for key, value in start.state_dict().items()}
    model = DerainNet(start.config)
    model.load_state_dict(mixed)
    return model.eval()


def alpha_list(text: str) -> list[float]:
    """"0,0.25,1" -> [0.0, 0.25, 1.0]; argparse turns the ValueError into one usage line."""
    alphas = [float(a) for a in text.split(",")]
    if not all(0.0 <= a <= 1.0 for a in alphas):
        raise ValueError(text)
    return alphas


def plot(rows: list[dict], tone_bound: float, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(6, 4))
    tone = [r["tone_change"] for r in rows]
    psnr = [r["validation"]["psnr"] for r in rows]
    axis.plot(tone, psnr, "o-")
    for row, x, y in zip(rows, tone, psnr):
        axis.annotate(f"a={row['alpha']:g}", (x, y), textcoords="offset points", xytext=(6, -10))
    axis.axvline(tone_bound, color="grey", linestyle="--", label=f"tone bound ({tone_bound:g} levels)")
    axis.set_xlabel("tone change on real photos (levels of Y)")
    axis.set_ylabel("validation PSNR, all pairs (dB)")
    axis.set_title("(1 - a) * start + a * end")
    axis.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=Path, required=True, help="the parent checkpoint (a = 0)")
    parser.add_argument("--end", type=Path, required=True, help="its fine-tune (a = 1)")
    parser.add_argument("--run", type=Path, required=True, help="run folder whose validation pairs score them")
    parser.add_argument("--alphas", type=alpha_list, default="0,0.25,0.5,0.75,1", help="comma-separated, in [0, 1]")
    add_data_option(parser, what="the data folder (its real/ holds the tone photos)")
    parser.add_argument("--tone-bound", type=float, default=3.0, help="drawn on the plot (levels)")
    parser.add_argument("--keep", type=Path, help="save each candidate here as a-<alpha>.pt")
    parser.add_argument("-o", "--output", type=Path,
                        default=Path(__file__).parent / "results" / "training" / "interpolation")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start, start_meta = load_checkpoint(args.start)
    end, end_meta = load_checkpoint(args.end)
    pairs, sources = run_pairs(args.run)
    tone_photos = photos(args.data)
    rows = []
    for alpha in tqdm(args.alphas, desc="alphas", unit="candidate"):
        model = interpolate(start, end, alpha)
        rows.append({"alpha": alpha, "validation": score_by_source(model, pairs, sources),
                     **tone_summary(model, tone_photos, f"a={alpha:g}")})
        if args.keep:  # ready to bundle: the end's training record, these weights' scores, both parents
            lineage = {"interpolated": f"(1 - {alpha:g}) * start + {alpha:g} * end",
                       "start": {"path": str(args.start), **start_meta.get("lineage", {})},
                       "end": {"path": str(args.end), **end_meta.get("lineage", {})}}
            save_checkpoint(model, args.keep / f"a-{alpha:g}.pt",
                            {"training": end_meta.get("training"), "schedule": end_meta.get("schedule"),
                             "validation": rows[-1]["validation"], "lineage": lineage})
        print(json.dumps({"alpha": alpha, "psnr": rows[-1]["validation"]["psnr"], "tone": rows[-1]["tone_change"]}))
    report = {"command": "python benchmarks/interpolate.py " + " ".join(sys.argv[1:]),
              "start": str(args.start), "end": str(args.end), "run": str(args.run),
              "tone": f"benchmarks/tone_shift.py's measure on {len(tone_photos)} photos of real/SIRR-real147",
              "candidates": rows}
    args.output.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.output / "interpolation.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1) + "\n")
    plot(rows, args.tone_bound, args.output / "interpolation.png")


if __name__ == "__main__":
    try:
        main()
    except DerainError as error:  # a bad checkpoint, run folder or data folder: one line, exit 1
        sys.exit(f"interpolate: {error}")
