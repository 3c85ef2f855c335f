"""The `derain` command. Each subcommand is a thin call into one package."""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import typing
from pathlib import Path

from . import __version__
from .data import DEFAULT_MAX_IMAGE_PIXELS
from .errors import DerainError
from .model.config import CONFIGS

# Optional imports and the extra that brings each (pyproject.toml).
_EXTRA_OF_MODULE = {"onnx": "onnx", "onnxsim": "onnx", "onnxruntime": "onnx", "polygraphy": "onnx",
                    "matplotlib": "plot", "skimage": "train", "torch": "torch", "cv2": "desktop",
                    "tensorrt": "tensorrt", "cuda": "tensorrt"}


def _info(args: argparse.Namespace) -> None:
    from .info import model_info

    if args.onnx is not None:
        _onnx_info(args.onnx, args.json)
        return
    if args.store is not None and not args.store.is_dir():
        raise DerainError(f"{args.store}: no such engine store (a folder made by `derain build`)")
    rows = [model_info(name) for name in ([args.model] if args.model else CONFIGS)]
    if args.store:
        from .engines.store import list_store

        engines = [m.to_dict() for m in list_store(args.store)]
    if args.json:
        print(json.dumps({"models": rows, "engines": engines} if args.store else rows, indent=2))
        return
    print(f"{'model':8} {'params':>10} {'GFLOPs 256x256':>15} {'GFLOPs 1280x720':>16}")
    for row in rows:
        print(f"{row['model']:8} {row['params_m']:>9.3f}M {row['gflops']['256x256']:>15.2f} "
              f"{row['gflops']['1280x720']:>16.2f}")
    if args.store:
        print(f"\nengines in {args.store}:" if engines else f"\nno engines in {args.store}")
        for engine in engines:
            device = engine["device"]
            print(f"  {engine['name']}.{engine['precision']}  {device['gpu']} sm{device['compute_capability']} "
                  f"TensorRT {device['tensorrt']}  input {engine['input']['shape']}")


def _run(args: argparse.Namespace) -> None:
    from .deraining import derain_paths

    derain_paths(args.inputs, args.output, lambda: _backend(args), args.max_image_pixels)


def _train(args: argparse.Namespace) -> None:
    from .data.datasets import DataSpec
    from .train import TrainSettings, train
    from .train.loop import parse_patches

    try:
        mix = tuple(float(w) for w in args.mix.split(","))
    except ValueError:
        mix = ()
    if len(mix) not in (3, 4) or min(mix) < 0:
        raise DerainError(f"--mix {args.mix!r}: three or four non-negative weights (pairs,synthetic,transplant[,rainless])")
    veil = {} if args.haze is None else {"haze": args.haze}
    spec = DataSpec(pairs=tuple(args.pairs), clean=tuple(args.clean), rain_layers=tuple(args.rain_layers), mix=mix,
                    val_fraction=args.val_fraction, align_tone=tuple(args.align_tone),
                    streak_targets=tuple(args.streak_targets), **veil)
    settings = TrainSettings(model=args.model, init=str(args.init) if args.init else None, data=spec,
                             steps=args.steps, time_budget=args.time_budget,
                             batch=args.batch, patches=parse_patches(args.patches), lr=args.lr, loss=args.loss,
                             fft_weight=args.fft_weight, val_every=args.val_every, save_every=args.save_every,
                             seed=args.seed, device=args.device, workers=args.workers, bf16=args.bf16,
                             channels_last=args.channels_last, compile=args.compile, threads=args.threads)
    log = train(settings, args.output, resume=args.resume)
    print(json.dumps({"run": str(args.output), "best": log["best"]}, indent=2))


def _duration(text: str) -> float:
    """"110m", "2h", "90s" or plain seconds -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except ValueError:
        seconds = float("nan")
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 110m, 2h or 90s")
    return seconds


def _eval(args: argparse.Namespace) -> None:
    from .atomic import atomic_path
    from .data.pairs import load_pairs, pair_paths
    from .model import load_checkpoint
    from .model.checkpoint import record_in_checkpoint
    from .train.evaluate import evaluate, evaluate_splits, markdown_table, test_splits

    if args.record and args.checkpoint is None:
        raise DerainError("--record needs --checkpoint (the bundled checkpoint is part of the package)")
    folder = Path(args.data)
    if args.data == "all":
        if args.data_root is None:
            raise DerainError("--data all: no data folder (give --data-root FOLDER or set DERAIN_DATA; "
                              "the layout is in docs/training.md)")
        splits = test_splits(args.data_root)
    elif args.data != "synthetic":  # <dataset>/<split> as "Rain100L/test", another folder by its name
        splits = {f"{folder.parent.name}/{folder.name}" if folder.name in ("test", "train") else folder.name: folder}
    for split in splits.values() if args.data != "synthetic" else ():
        pair_paths(split)  # every folder checked before any work
    model, _ = load_checkpoint(args.checkpoint, device=args.device)
    if args.data == "synthetic":
        result = {"data": args.data, **evaluate(model, load_pairs(args.data))}
    else:
        result = {"checkpoint": str(args.checkpoint or "bundled"), "splits": evaluate_splits(model, splits, args.save)}
        print(markdown_table(result["splits"]), file=sys.stderr)
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
    summary = result if args.data == "synthetic" else {
        name: {k: v for k, v in s.items() if k != "per_image"} for name, s in result["splits"].items()}
    print(json.dumps(summary, indent=2))
    if args.record:
        key = "synthetic_eval" if args.data == "synthetic" else f"eval:{args.data}"
        record_in_checkpoint(args.checkpoint, key, summary)


def _onnx_info(path: Path, as_json: bool) -> None:
    """What one frame through this ONNX costs: GFLOPs (from the config it was exported from) and the
    bytes it moves (export/traffic.py)."""
    from .export.manifest import read_manifest
    from .export.traffic import onnx_traffic
    from .info import count_flops
    from .model import CONFIGS

    traffic = onnx_traffic(path)  # a missing or non-ONNX file: one line (export/graph.py's read_onnx)
    manifest = read_manifest(path)
    row: dict = {"onnx": str(path), "precision": manifest.precision if manifest else "unknown",
                 "input": manifest.input["shape"] if manifest else None, "gflops": None, "traffic": traffic.to_dict()}
    if manifest and manifest.config in CONFIGS:  # per frame: height and width are static, a batch may not be
        _, _, height, width = manifest.input["shape"]
        row["gflops"] = round(count_flops(manifest.config, height, width) / 1e9, 2)
    if as_json:
        print(json.dumps(row, indent=2))
        return
    shape = "x".join(map(str, row["input"])) if row["input"] else "?"
    flops = f"{row['gflops']} GFLOPs, " if row["gflops"] is not None else ""
    print(f"{path} ({row['precision']}, input {shape}): {flops}{traffic.summary()}")


MAX_EXPORT_SIDE = 8192


def _export(args: argparse.Namespace) -> None:
    import onnx  # noqa: F401 - before any output: a missing extra is the one line printed
    import onnxsim  # noqa: F401
    from tqdm import tqdm

    from .export.fp16 import convert_to_fp16
    from .export.manifest import file_sha256
    from .export.names import OPSET
    from .export.onnx_export import export_onnx
    from .export.parity import check_parity, parity_inputs
    from .export.traffic import onnx_traffic
    from .info import count_flops
    from .model import load_checkpoint
    from .model.checkpoint import bundled_checkpoint_path

    for option, value in (("--height", args.height), ("--width", args.width)):
        if not 1 <= value <= MAX_EXPORT_SIDE:
            raise DerainError(f"{option} {value}: from 1 to {MAX_EXPORT_SIDE} pixels (TensorRT tensors hold at most "
                              "2**31 elements, and a 16-channel full-resolution feature map of 8192x8192 is half that)")
    model, _ = load_checkpoint(args.checkpoint)
    weights = file_sha256(args.checkpoint or bundled_checkpoint_path())
    steps = ["export", "parity"] + ["fp16"] * args.fp16
    progress = tqdm(total=len(steps), desc="export", unit="step", leave=False)  # each step can take minutes
    path = export_onnx(model, args.output, args.height, args.width, args.batch, checkpoint_sha256=weights,
                       dynamic_batch=args.dynamic_batch)
    progress.set_description("parity")
    progress.update()
    batch = f"1..{args.batch}" if args.dynamic_batch else args.batch
    tqdm.write(f"wrote {path} (opset {OPSET}, input rainy {batch}x3x{args.height}x{args.width}, simplified, checked; "
               f"{count_flops(model.config, args.height, args.width) / 1e9:.2f} GFLOPs per frame)")
    tqdm.write(f"  {onnx_traffic(path).summary()}")
    parity = check_parity(model, path, parity_inputs(args.batch, args.height, args.width))
    progress.update()
    tqdm.write(parity.summary())
    if args.fp16:
        progress.set_description("fp16")
        fp16 = convert_to_fp16(path, path.with_suffix(".fp16.onnx"), fp32_normalization=args.fp32_normalization)
        progress.update()
        kept = "LayerNorm, Softmax, " if args.fp32_normalization else ""
        tqdm.write(f"wrote {fp16} (FP16; {kept}the NAB sort, position maps and full-image reductions kept FP32)")
        tqdm.write(f"  {onnx_traffic(fp16).summary()}")
    progress.close()
    if args.lint:
        _print_lint(path, args.targets)
    if not parity.passed:
        raise DerainError(f"{path}: ONNX Runtime output differs from PyTorch beyond the tolerance")


def _print_lint(path: Path, targets: str) -> None:
    from .export.graph import read_onnx
    from .export.lint import TARGETS, lint_model, sequential_steps

    unknown = [t for t in targets.split(",") if t not in TARGETS]
    if unknown:
        raise DerainError(f"--targets {targets}: unknown TensorRT version {unknown[0]} "
                          f"(choose from {', '.join(TARGETS)})")
    model = read_onnx(path)
    findings = lint_model(model, tuple(targets.split(",")))
    for finding in findings:
        print(finding)
    errors = sum(f.level == "error" for f in findings)
    steps = {t: sum(n or 0 for n in sequential_steps(model, t).values()) for t in targets.split(",")}
    print(f"lint {path}: sequential loop steps per inference: " + ", ".join(f"TensorRT {t} {n:,}" for t, n in steps.items()))
    print(f"lint {path}: {errors} errors, {len(findings) - errors} warnings/notes for TensorRT {targets}")
    if errors:
        raise DerainError(f"{path}: {errors} TensorRT compatibility errors (listed above)")


def _lint(args: argparse.Namespace) -> None:
    if not args.model.is_file():
        raise DerainError(f"{args.model}: no such file")
    _print_lint(args.model, args.targets)


def _calib(args: argparse.Namespace) -> None:
    from .calib.frames import sample_frames, save_calibration

    frames = sample_frames(args.source, args.num, args.height, args.width, seed=args.seed)
    save_calibration(frames, args.output)
    print(f"wrote {args.output}: {frames.shape[0]} frames of 3x{args.height}x{args.width} float32 ('rainy')")


def _quantize(args: argparse.Namespace) -> None:
    from .calib.frames import load_calibration
    from .calib.quantize import int8_mac_share, quantize_onnx

    if not args.model.is_file():
        raise DerainError(f"{args.model}: no such file")
    calibration = None if args.calib is None else load_calibration(args.calib)
    quantize_onnx(args.model, calibration, args.output, reference=not args.calib_only)
    print(f"wrote {args.output} (INT8 Q/DQ, symmetric, per-channel weights; "
          f"{int8_mac_share(args.output):.1%} of the multiply-accumulates in INT8)")
    if args.sensitivity:
        from .validate.sensitivity import sensitivity, write_sensitivity

        rows, baselines = sensitivity(args.model, args.output, calibration)
        for path in write_sensitivity(rows, baselines, args.sensitivity):
            print(f"wrote {path}")
        print("\n".join((args.sensitivity / "sensitivity.md").read_text().splitlines()[:12]))


def _validate(args: argparse.Namespace) -> None:
    from .data.pairs import load_pairs
    from .validate.report import validate, write_report

    if not args.max_loss_db >= 0:
        raise DerainError(f"--max-loss-db {args.max_loss_db}: a loss in dB, 0 or more")
    models = {"fp32": args.onnx, "fp16": args.fp16, "int8": args.int8, "engine": args.engine}
    models = {precision: path for precision, path in models.items() if path is not None}
    report, panels = validate(models, load_pairs(args.data), args.max_loss_db, str(args.data))
    for path in write_report(report, panels, args.output):
        print(f"wrote {path}")
    print((args.output / "report.md").read_text())
    if not report.passed:
        raise DerainError(f"PSNR loss above {args.max_loss_db} dB (see {args.output / 'report.md'})")


def _build_options(args: argparse.Namespace):  # noqa: ANN202
    from .engines.build import BuildOptions

    return BuildOptions(precision=args.precision, store=args.store, name=args.name, workspace_mib=args.workspace_mib,
                        optimization_level=args.optimization_level, timing_cache=args.timing_cache, tf32=args.tf32)


def _build(args: argparse.Namespace) -> None:
    from .engines.build import build_engine

    print(f"wrote {build_engine(args.model, _build_options(args))}")


def _deploy(args: argparse.Namespace) -> None:
    from .deploy import DeployOptions, deploy

    options = DeployOptions(height=args.height, width=args.width, precision=args.precision, calib=args.calib,
                            calib_frames=args.calib_frames, calib_only=args.calib_only, checkpoint=args.checkpoint,
                            onnx_dir=args.onnx_dir, max_loss_db=args.max_loss_db, force=args.force)
    engine = deploy(options, _build_options(args))
    print(f"wrote {engine} (and its manifest, with the equivalent trtexec command)")


def _add_build_options(parser: argparse.ArgumentParser) -> None:
    """The engine options `build` and `deploy` share, with trtexec's names as aliases."""
    parser.add_argument("--store", type=Path, default=Path("engines"), help="engine store folder")
    parser.add_argument("--name", help="engine name (default: from the ONNX or the config and size)")
    parser.add_argument("--workspace-mib", "--workspace", type=COUNT, default=2048,
                        help="builder workspace in MiB (trtexec --memPoolSize=workspace:N)")
    parser.add_argument("--optimization-level", "--builderOptimizationLevel", type=int, default=3, choices=range(6),
                        help="TensorRT builder optimization level: higher searches longer")
    parser.add_argument("--timing-cache", "--timingCacheFile", type=Path,
                        help="timing cache file (default: one per device in the store)")
    parser.add_argument("--tf32", action="store_true",
                        help="let FP32 layers round MatMul/Conv inputs to TF32 (off: it moves NAB sort keys; "
                             "benchmarks/tf32.py)")


def _backend(args: argparse.Namespace):  # noqa: ANN202
    from .runtime.factory import open_backend

    return open_backend(args.backend, engine=args.engine, onnx=args.onnx, checkpoint=args.checkpoint,
                        device=args.device, memory=args.memory, cuda_graph=args.cuda_graph, url=args.url,
                        model=args.model, max_pixels=args.max_pixels)


def _stream(args: argparse.Namespace) -> None:
    from .runtime.stream import run_streams

    with _backend(args) as backend:
        stats = run_streams(args.source, args.sink, backend, realtime=args.realtime, queue_size=args.queue,
                            batch_timeout=args.batch_timeout_ms / 1000)
    print(json.dumps(stats.summary(), indent=2))


def _triton(args: argparse.Namespace) -> None:
    from .triton.repository import TritonOptions, write_repository

    if (args.engine is None) == (args.onnx is None):
        raise DerainError("derain triton: give one of --engine X.engine or --onnx X.onnx")
    options = TritonOptions(instances=args.instances, kind=args.kind, queue_delay_us=args.queue_delay_us,
                            python_backend=args.python_backend)
    output = write_repository(args.engine or args.onnx, args.output, options)
    print(f"wrote {output}: serve it with tritonserver --model-repository {output} (model 'derain': uint8 frames)")
    if args.engine:  # a plan runs only under the TensorRT release, and on the GPU, that built it
        from .engines.store import read_manifest

        device = read_manifest(args.engine).device
        print(f"the plan needs TensorRT {device.tensorrt} on {device.describe()}: a Triton release built on that "
              "TensorRT, on that GPU (the engine's manifest is network/1/model.json)")


def _gstreamer(args: argparse.Namespace) -> None:
    from .gstreamer import shell_lines

    print(shell_lines())


def _bench(args: argparse.Namespace) -> None:
    from .runtime.bench import parse_sizes, run_bench, save_results

    parse_sizes(args.sizes)  # before the backend loads: a bad size is the one line printed
    with _backend(args) as backend:
        results = run_bench(backend, args.sizes, warmup=args.warmup, iterations=args.iterations)
    print(json.dumps(results, indent=2))
    print(f"wrote {save_results(results, args.output, note=args.note)}")


def _add_backend_options(parser: argparse.ArgumentParser) -> None:
    from .runtime.backend import DEFAULT_MAX_PIXELS
    from .runtime.factory import BACKENDS

    parser.add_argument("--backend", default="auto", choices=BACKENDS,
                        help="auto: the engine if given, else the ONNX, else torch")
    parser.add_argument("--engine", type=Path, help="TensorRT engine (from `derain build`)")
    parser.add_argument("--onnx", type=Path, help="ONNX model for ONNX Runtime (from `derain export`)")
    parser.add_argument("--checkpoint", type=Path, help="for the torch backend (default: the bundled one)")
    parser.add_argument("--url", help="Triton server, grpc://host:8001 (from `derain triton`; the `serve` extra)")
    parser.add_argument("--model", default="derain", help="the Triton model to call")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--memory", default="auto", choices=("auto", "cuda-python", "pycuda"),
                        help="TensorRT device memory through cuda-python or pycuda")
    parser.add_argument("--cuda-graph", action="store_true", help="TensorRT: capture the enqueue as a CUDA graph")
    parser.add_argument("--threads", type=COUNT, help="CPU threads for torch and ONNX Runtime (1 on a busy machine)")
    parser.add_argument("--max-pixels", type=COUNT, default=DEFAULT_MAX_PIXELS,
                        help="torch: larger frames run as overlapping tiles of this many pixels, so memory stays "
                             "bounded (at 2 MP with `realtime`: 2.5 GiB peak for a 24 MP photo)")


class _ShowDefaults(argparse.HelpFormatter):
    """Every option's default in its --help, where there is one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS, []) and "%(default)" not in help_text:
            help_text += " (default: %(default)s)"
        return help_text


class _Parser(argparse.ArgumentParser):
    """argparse with derain's one-line errors: `derain: error: ...` and where the usage is, exit 1
    (argparse would print the usage, then `derain train: error:`, and exit 2). Subcommands inherit it."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(1, f"derain: error: {message} (usage: {self.prog} --help)\n")


def _number(kind: type, low: float, low_open: bool = False, below: float | None = None) -> typing.Callable[[str], typing.Any]:
    """An argparse type: `kind` (int or float), finite, at least `low` (above it, with `low_open`)
    and below `below`. Every numeric option goes through one, so a value no command can use is
    refused where it is parsed, in one line naming the option (`--queue 0` once hung a stream)."""
    word = "an integer" if kind is int else "a number"
    bound = f"{'above' if low_open else 'at least'} {low:g}" + (f" and below {below:g}" if below is not None else "")

    def parse(text: str) -> typing.Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {word}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (low_open and value == low) or (below is not None and value >= below):
            raise argparse.ArgumentTypeError(f"must be {word} {bound}, got {text}")
        return value

    return parse


COUNT = _number(int, 1)  # frames, steps, threads, pixels, sizes, instances, queue slots
NON_NEGATIVE_INT = _number(int, 0)  # seeds, workers, warm-up runs, microseconds
NON_NEGATIVE = _number(float, 0.0)  # dB bounds, loss weights, milliseconds
POSITIVE = _number(float, 0.0, low_open=True)  # learning rates
FRACTION = _number(float, 0.0, below=1.0)  # shares held out, veils of fog


def build_parser() -> argparse.ArgumentParser:
    from .deploy import INT8_MAX_LOSS_DB

    parser = _Parser(prog="derain", description="Derain images and video with a dual-stage "
                     "(masked / non-local attention) transformer.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = _ShowDefaults

    run = sub.add_parser("run", help="derain images, folders or video files (the main job)", formatter_class=defaults)
    run.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image, folder or video file")
    run.add_argument("-o", "--output", required=True, type=Path,
                     help="output file (one input file) or folder (outputs keep their names); never one of the inputs")
    run.add_argument("--max-image-pixels", type=COUNT, default=DEFAULT_MAX_IMAGE_PIXELS,
                     help="refuse larger images before decoding them (read from the file's header)")
    _add_backend_options(run)
    run.set_defaults(func=_run)

    info = sub.add_parser("info", help="parameters and GFLOPs of the model configs; GFLOPs and activation traffic "
                          "of an ONNX", formatter_class=defaults)
    info.add_argument("--onnx", type=Path, help="instead: what one frame through this ONNX computes and moves")
    info.add_argument("--model", choices=tuple(CONFIGS), help="one config (default: all)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument("--store", type=Path, help="also list the engines in this engine store (e.g. engines/)")
    info.set_defaults(func=_info)

    train = sub.add_parser("train", help="train a model (resumable; under torchrun: DDP)",
                           formatter_class=defaults)
    train.add_argument("--model", default="realtime", choices=tuple(CONFIGS), help="model config")
    train.add_argument("--init", type=Path, help="start from this checkpoint's weights (fine-tune)")
    train.add_argument("--pairs", nargs="*", default=[], help="paired folders (rain/, norain/); never a test split")
    train.add_argument("--clean", nargs="*", default=["skimage"],
                       help="folders of clean photographs for synthetic rain ('skimage': its sample photos)")
    train.add_argument("--rain-layers", nargs="*", default=[], help="paired folders whose rain is transplanted")
    train.add_argument("--mix", default="1,1,1,0", help="weights of pairs,synthetic,transplant,rainless")
    train.add_argument("--align-tone", nargs="*", default=[], metavar="PAIRS",
                       help="paired folders whose clean frame is another moment of the scene (GT-RAIN): "
                            "targets keep the rainy frame's illumination")
    train.add_argument("--streak-targets", nargs="*", default=[], metavar="PAIRS",
                       help="paired folders of real rain (GT-RAIN) whose targets repair only the rain streaks "
                            "and keep the rest of the rainy frame (its fog, sharpness and light)")
    train.add_argument("--haze", type=FRACTION, metavar="VEIL",
                       help="largest veil of rain fog in synthetic camera rain, 0-1 (default 0.05, a trace; "
                            "a global fit to GT-RAIN's train pairs reaches 0.66)")
    train.add_argument("--val-fraction", type=FRACTION, default=0.1, help="of the pairs, held out for validation")
    train.add_argument("--steps", type=COUNT, default=2000, help="ignored with --time-budget")
    train.add_argument("--time-budget", type=_duration, help="e.g. 110m: the step count is set to fill it")
    train.add_argument("--batch", type=COUNT, default=8, help="patches per step (per process under torchrun)")
    train.add_argument("--patches", default="64", help="progressive patches PATCH:FRACTION,... e.g. 64:0.7,128:0.3")
    train.add_argument("--lr", type=POSITIVE, help="peak learning rate (default: per config, 1e-3 for realtime)")
    train.add_argument("--loss", default="charbonnier", choices=("charbonnier", "l1"), help="pixel loss")
    train.add_argument("--fft-weight", type=NON_NEGATIVE, default=0.0, help="weight of an FFT-amplitude L1 term")
    train.add_argument("--val-every", type=COUNT, default=500, help="steps between validations")
    train.add_argument("--save-every", type=COUNT, default=200, help="steps between resumable checkpoints")
    train.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="seeds weights and every batch")
    train.add_argument("--device", default="cpu", help="torch device (cuda: one GPU per torchrun process)")
    train.add_argument("--workers", type=NON_NEGATIVE_INT, default=0, help="DataLoader worker processes")
    train.add_argument("--bf16", action="store_true",
                       help="bfloat16 autocast (1.27x on a CPU with AVX512-BF16, -0.04 dB at equal steps: "
                            "benchmarks/train_precision.py; slow on CPUs without native bf16)")
    train.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                       help="channels-last memory format (1.07x, no PSNR cost)")
    train.add_argument("--compile", action="store_true",
                       help="torch.compile the training forward (1.21x per step at 64 px, after a minute or two "
                            "of compiling per patch size: benchmarks/train_speed.py)")
    train.add_argument("--threads", type=COUNT, help="CPU threads for torch (1 on a busy machine)")
    train.add_argument("--resume", action="store_true", help="continue the run in --output exactly")
    train.add_argument("-o", "--output", required=True, type=Path,
                       help="run folder: last.pt (resume), best.pt (best EMA weights), log.json, curves.png")
    train.set_defaults(func=_train)

    evaluate = sub.add_parser("eval", help="PSNR/SSIM (Y channel, uint8 outputs) of a checkpoint on paired data",
                              formatter_class=defaults)
    evaluate.add_argument("--checkpoint", type=Path, help="default: the bundled checkpoint")
    evaluate.add_argument("--data", default="synthetic",
                          help='a paired folder (rain/, norain/), "all" (every <dataset>/test under --data-root) '
                               'or "synthetic" (held-out sample photos)')
    from .data.pairs import default_data_root

    evaluate.add_argument("--data-root", type=Path, default=default_data_root(),
                          help="for --data all: a data folder laid out as docs/training.md says (default: $DERAIN_DATA)")
    evaluate.add_argument("--json", type=Path, help="write per-image and mean scores here")
    evaluate.add_argument("--save", type=Path, help="save side-by-side images of the worst cases here")
    evaluate.add_argument("--device", default="cpu", help="torch device")
    evaluate.add_argument("--record", action="store_true", help="also store the scores in the checkpoint's meta")
    evaluate.set_defaults(func=_eval)
    export = sub.add_parser("export", help="checkpoint -> static-shape ONNX for TensorRT, with a parity check",
                           formatter_class=defaults)
    export.add_argument("--checkpoint", type=Path, help="default: the bundled checkpoint")
    export.add_argument("--height", type=COUNT, required=True, help="static input height (the stream's)")
    export.add_argument("--width", type=COUNT, required=True, help="static input width")
    export.add_argument("--batch", type=COUNT, default=1, help="images per inference (the most, with --dynamic-batch)")
    export.add_argument("--dynamic-batch", action="store_true",
                        help="batch 1..--batch (TensorRT profile min 1 / opt N / max N; needed by Triton's batcher)")
    export.add_argument("--fp16", action="store_true", help="also write <output>.fp16.onnx for strongly typed TRT")
    export.add_argument("--fp32-normalization", action="store_true",
                        help="with --fp16: keep LayerNorm and Softmax FP32 (two Casts each; for comparing on a device)")
    export.add_argument("--lint", action="store_true", help="also run the TensorRT compatibility lint")
    export.add_argument("--targets", default="10.3,10.13,11", help="TensorRT versions for the lint")
    export.add_argument("-o", "--output", required=True, type=Path, help="the ONNX file (its manifest goes beside it)")
    export.set_defaults(func=_export)

    lint = sub.add_parser("lint", help="TensorRT compatibility lint of an ONNX model (exit 1 on errors)",
                         formatter_class=defaults)
    lint.add_argument("model", type=Path)
    lint.add_argument("--targets", default="10.3,10.13,11", help="TensorRT versions: 10.3, 10.13, 11")
    lint.set_defaults(func=_lint)

    calib = sub.add_parser("calib", help="calibration frames from a video or a folder of images",
                          formatter_class=defaults)
    calib.add_argument("--source", required=True, type=Path, help="video file or folder of images")
    calib.add_argument("--num", type=COUNT, default=64, help="frames, spread over the whole source")
    calib.add_argument("--height", type=COUNT, required=True, help="frame height (the ONNX's)")
    calib.add_argument("--width", type=COUNT, required=True, help="frame width (the ONNX's)")
    calib.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="where frames are cut")
    calib.add_argument("-o", "--output", required=True, type=Path, help="calib.npz")
    calib.set_defaults(func=_calib)

    quantize = sub.add_parser("quantize", help="ONNX + calib.npz -> INT8 Q/DQ ONNX (ONNX Runtime quantize_static)",
                             formatter_class=defaults)
    quantize.add_argument("model", type=Path)
    quantize.add_argument("--calib", type=Path,
                          help="calib.npz from `derain calib`: widens the shipped reference ranges, never narrows them")
    quantize.add_argument("--calib-only", action="store_true",
                          help="ranges from --calib alone, narrowed to its content (for experiments, not engines)")
    quantize.add_argument("--sensitivity", type=Path, metavar="DIR",
                          help="also measure each activation's share of the INT8 loss: DIR/sensitivity.{json,md,png}")
    quantize.add_argument("-o", "--output", required=True, type=Path, help="the Q/DQ ONNX to write")
    quantize.set_defaults(func=_quantize)

    check = sub.add_parser("validate", help="PSNR/SSIM of FP32/FP16/INT8 vs ground truth and the loss vs FP32",
                          formatter_class=defaults)
    check.add_argument("--data", default="synthetic", help='paired folder (rain/, norain/) or "synthetic"')
    check.add_argument("--onnx", required=True, type=Path, help="the FP32 ONNX (reference)")
    check.add_argument("--fp16", type=Path, help="the FP16 ONNX (export --fp16)")
    check.add_argument("--int8", type=Path, help="the Q/DQ ONNX (quantize)")
    check.add_argument("--engine", type=Path, help="a TensorRT engine built from the same ONNX")
    check.add_argument("--max-loss-db", type=NON_NEGATIVE, required=True, help="fail above this PSNR loss vs FP32")
    check.add_argument("-o", "--output", type=Path, default=Path("report"), help="report folder")
    check.set_defaults(func=_validate)

    build = sub.add_parser("build", help="ONNX -> TensorRT engine for this GPU, into the engine store",
                           formatter_class=defaults)
    build.add_argument("model", type=Path, help="ONNX: FP32, FP16 (export --fp16) or Q/DQ (quantize)")
    build.add_argument("--precision", default="fp16", choices=("fp32", "fp16", "int8"),
                       help="the graph's: FP16 ONNX -> fp16, Q/DQ ONNX -> int8 (an FP32 ONNX builds fp32, or fp16 "
                            "after a conversion)")
    _add_build_options(build)
    build.set_defaults(func=_build)

    deploy = sub.add_parser("deploy", help="checkpoint -> ONNX -> FP16 or INT8 -> TensorRT engine, in one step",
                            formatter_class=defaults)
    deploy.add_argument("--checkpoint", type=Path, help="default: the bundled checkpoint")
    deploy.add_argument("--height", type=COUNT, required=True, help="static input height")
    deploy.add_argument("--width", type=COUNT, required=True, help="static input width")
    deploy.add_argument("--precision", default="fp16", choices=("fp32", "fp16", "int8"), help="engine precision")
    deploy.add_argument("--calib", type=Path, help="int8, optional: a video or a folder of your camera's frames, "
                        "which widen the shipped reference ranges")
    deploy.add_argument("--calib-frames", type=COUNT, default=64, help="frames spread over --calib")
    deploy.add_argument("--calib-only", action="store_true",
                        help="int8 ranges from --calib alone (narrowed to its content; the check will tell)")
    deploy.add_argument("--max-loss-db", type=NON_NEGATIVE, default=INT8_MAX_LOSS_DB,
                        help="int8: refuse a model that loses more than this vs FP32 on a group of reference pairs")
    deploy.add_argument("--force", action="store_true", help="int8: build even when the check fails")
    deploy.add_argument("--onnx-dir", type=Path, default=Path("deploy"), help="where the ONNX files stay")
    _add_build_options(deploy)
    deploy.set_defaults(func=_deploy)

    triton = sub.add_parser("triton", help="a Triton Inference Server model repository (uint8 frames in and out)",
                            formatter_class=defaults)
    triton.add_argument("--engine", type=Path, help="a dynamic-batch TensorRT engine -> tensorrt_plan")
    triton.add_argument("--onnx", type=Path, help="a dynamic-batch ONNX -> onnxruntime_onnx")
    triton.add_argument("--python-backend", action="store_true",
                        help="one Python-backend model running derain's ONNX Runtime backend instead of the ensemble")
    triton.add_argument("--instances", type=COUNT, default=1, help="model instances per GPU (or on the CPU)")
    triton.add_argument("--kind", default="gpu", choices=("gpu", "cpu"), help="where the instances run")
    triton.add_argument("--queue-delay-us", type=NON_NEGATIVE_INT, default=2000,
                        help="how long the dynamic batcher waits to fill the preferred batch (N)")
    triton.add_argument("-o", "--output", required=True, type=Path, help="the repository folder (must not exist)")
    triton.set_defaults(func=_triton)

    stream = sub.add_parser("stream", help="derain a live or recorded stream in real time", formatter_class=defaults)
    stream.add_argument("--source", required=True, action="append",
                        help="video file, folder, /dev/videoN, v4l2://, csi://N, rtsp://; repeat it for several "
                             "cameras, batched into one inference call")
    stream.add_argument("--sink", required=True, action="append",
                        help="display://0, video file, folder, rtsp://..., or null; one per --source, in order")
    stream.add_argument("--realtime", action="store_true", help="drop each source's oldest frames when inference lags")
    stream.add_argument("--queue", type=COUNT, default=4, help="frames buffered between stages, per stream")
    stream.add_argument("--batch-timeout-ms", type=NON_NEGATIVE, default=20.0,
                        help="a batch leaves when full (the engine's batch) or this long after its first frame")
    _add_backend_options(stream)
    stream.set_defaults(func=_stream)

    gstreamer = sub.add_parser("gstreamer", help="the `derain` GStreamer element: what GStreamer needs to find it",
                               formatter_class=defaults)
    gstreamer.add_argument("--env", action="store_true", required=True,
                           help='print the variables to set: eval "$(derain gstreamer --env)", then gst-inspect-1.0 derain')
    gstreamer.set_defaults(func=_gstreamer)

    bench = sub.add_parser("bench", help="latency, FPS and peak memory of a backend at several sizes",
                          formatter_class=defaults)
    bench.add_argument("--sizes", default="640x360,1280x720", help="WxH list")
    bench.add_argument("--warmup", type=NON_NEGATIVE_INT, default=3, help="untimed runs first")
    bench.add_argument("--iterations", type=COUNT, default=10, help="timed runs (medians)")
    bench.add_argument("-o", "--output", type=Path, help="default: benchmarks/results/runtime-<host>.json")
    bench.add_argument("--note", help="a word on the run (model, machine), stored with the results")
    _add_backend_options(bench)
    bench.set_defaults(func=_bench)
    return parser


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (docker stop, systemctl stop) ends a run as Ctrl-C does: recordings are finalized,
    temporaries removed."""
    raise KeyboardInterrupt


def _close_progress_bars() -> None:
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        if getattr(args, "threads", None) is not None:
            from .runtime.factory import set_threads

            set_threads(args.threads)
        args.func(args)
    except DerainError as error:
        _close_progress_bars()  # the error gets a line of its own, not the end of a bar's
        print(f"derain: error: {error}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as error:
        extra = _EXTRA_OF_MODULE.get((error.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"derain: error: `derain {args.command}` needs {error.name}: pip install 'derain[{extra}]'",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("derain: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
