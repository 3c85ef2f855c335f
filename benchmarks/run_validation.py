"""A checkpoint scored on a training run's own validation pairs, exactly as the trainer scores its
EMA (per source folder too): what a run's shipping rule compares against. With --fit, on the pairs
the run trained on instead: the gap between the two says whether data or capacity limits the run.

    python benchmarks/run_validation.py --run runs/long [--checkpoint derain/checkpoints/realtime.pt] [--fit] [-o out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from derain.atomic import atomic_path
from derain.data.datasets import TrainingData
from derain.errors import DerainError
from derain.model import bundled_checkpoint_path, load_checkpoint
from derain.train.evaluate import mean_scores, score_pairs, source_scores
from derain.train.loop import TrainSettings


def run_pairs(run: Path, fit: bool = False) -> tuple[list, list[str]]:
    """A run's validation pairs (or, with `fit`, its training pairs) and the folder each comes from."""
    if not (run / "last.pt").is_file():
        raise DerainError(f"--run {run}: no last.pt (a run folder of derain train)")
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    settings = TrainSettings.from_dict(state["settings"])
    data = TrainingData(settings.data, settings.batch, lambda step: 64, settings.seed)
    if fit:
        return data.training_pairs(), data.training_sources()
    return data.validation_pairs(), data.validation_sources()


def score_by_source(model: torch.nn.Module, pairs: list, sources: list[str]) -> dict:
    """Mean scores over all pairs and per source folder, as the trainer logs its validation."""
    rows, _ = score_pairs(model.eval(), pairs, progress=False)
    return {**mean_scores(rows), "sources": source_scores(rows, sources)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="run folder with last.pt")
    parser.add_argument("--checkpoint", type=Path, default=bundled_checkpoint_path())
    parser.add_argument("--fit", action="store_true", help="score the run's training pairs, not its validation pairs")
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pairs, sources = run_pairs(args.run, args.fit)
    model, _ = load_checkpoint(args.checkpoint)
    result = {"command": "python benchmarks/run_validation.py " + " ".join(sys.argv[1:]), "run": str(args.run),
              "checkpoint": str(args.checkpoint),
              "pairs": "training" if args.fit else "validation", **score_by_source(model, pairs, sources)}
    if args.output:
        with atomic_path(args.output) as tmp:
            tmp.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DerainError as error:  # a bad run folder or checkpoint: one line, exit 1
        sys.exit(f"run_validation: {error}")
