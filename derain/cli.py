"""The `derain` command. Each subcommand is a thin call into one package."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import DerainError


def _info(args: argparse.Namespace) -> None:
    from .info import model_info
    from .model import CONFIGS

    rows = [model_info(name) for name in ([args.model] if args.model else CONFIGS)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'model':8} {'params':>10} {'GFLOPs 256x256':>15} {'GFLOPs 1280x720':>16}")
    for row in rows:
        print(f"{row['model']:8} {row['params_m']:>9.3f}M {row['gflops']['256x256']:>15.2f} "
              f"{row['gflops']['1280x720']:>16.2f}")


def _run(args: argparse.Namespace) -> None:
    from .deraining import derain_paths

    derain_paths(args.inputs, args.output, checkpoint=args.checkpoint, device=args.device)


def _train(args: argparse.Namespace) -> None:
    import torch

    from .model import build_model
    from .train import TrainSettings, train

    torch.set_num_threads(args.threads or torch.get_num_threads())
    settings = TrainSettings(data=args.data, steps=args.steps, batch=args.batch, patch=args.patch, lr=args.lr,
                             seed=args.seed, device=args.device)
    train(build_model(args.model), settings, output=args.output)
    print(f"saved {args.output}")


def _eval(args: argparse.Namespace) -> None:
    from .data.datasets import load_pairs
    from .model import load_checkpoint
    from .train import evaluate

    model, _ = load_checkpoint(args.checkpoint, device=args.device)
    result = {"data": args.data, **evaluate(model, load_pairs(args.data))}
    print(json.dumps(result, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="derain", description="Derain images and video with a dual-stage "
                                     "(masked / non-local attention) transformer.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="derain images, folders or video files (the main job)")
    run.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image, folder or video file")
    run.add_argument("-o", "--output", required=True, type=Path,
                     help="output file (one input file) or folder (outputs keep their names)")
    run.add_argument("--checkpoint", type=Path, help="default: the checkpoint bundled with the package")
    run.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    run.set_defaults(func=_run)

    info = sub.add_parser("info", help="parameters and GFLOPs of the model configs")
    info.add_argument("--model", choices=None, help="one config (default: all)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_info)

    train = sub.add_parser("train", help="train a model on paired folders or synthetic rain")
    train.add_argument("--model", default="edge", help="config name: paper, edge or tiny")
    train.add_argument("--data", default="synthetic", help='"synthetic" or a folder with rain/ and norain/')
    train.add_argument("--steps", type=int, default=2000)
    train.add_argument("--batch", type=int, default=8)
    train.add_argument("--patch", type=int, default=128)
    train.add_argument("--lr", type=float, default=3e-4)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="cpu")
    train.add_argument("--threads", type=int, help="CPU threads for torch")
    train.add_argument("-o", "--output", required=True, type=Path, help="checkpoint to write (.pt)")
    train.set_defaults(func=_train)

    evaluate = sub.add_parser("eval", help="PSNR/SSIM (Y channel) of a checkpoint on paired data")
    evaluate.add_argument("--checkpoint", type=Path, help="default: the bundled checkpoint")
    evaluate.add_argument("--data", default="synthetic", help='"synthetic" (held-out photos) or a paired folder')
    evaluate.add_argument("--device", default="cpu")
    evaluate.set_defaults(func=_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except DerainError as error:
        print(f"derain: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("derain: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
