"""Once per device: the bundled `realtime` as TensorRT engines (FP16; FP16 with LayerNorm and
Softmax kept FP32, review 3's E9; INT8) through the shipped TensorRT backend, against ONNX Runtime
FP32. One table, each engine without and with CUDA-graph capture:

- GPU ms: the engine alone, CUDA events around the enqueue or the graph launch (trtexec's "GPU
  Compute Time"), p50/p95 after warm-up; the latency bound is on its p50;
- host ms: frame in to frame out (uint8 BGR -> float RGB -> copies -> engine -> uint8), p50/p95;
- stream: `derain stream`'s pipeline on a folder of frames to a null sink, FPS and latency p50/p95;
- PSNR and its loss against FP32, and how many NAB sort keys agree with FP32's.
Exit 1 when an engine's GPU time is over its bound or it loses more than MAX_LOSS_DB.

    bash scripts/device-smoke.sh [--size 1280x720] [--data DIR] [--onnx-dir DIR] [--work DIR]

Everything but TensorRT comes first, with the documented install only: the ONNX files (exported,
converted, quantized with the package's own INT8 ranges, and linted: 0 sequential loop steps on
TensorRT 10.3), the evaluation pairs (named in one line), then the TensorRT check, where a machine
without TensorRT stops with one line (tests/test_device_smoke.py runs it so). `--onnx-dir` takes
the ONNX files a first run wrote elsewhere (`--work`), so a Jetson needs no PyTorch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from derain.errors import DerainError

LATENCY_BOUND_MS = 33.3  # the product's promise: 30 FPS at 1280x720 on an Orin NX / Nano (JetPack 6)
MAX_LOSS_DB = 0.3
TEST_SPLITS = ("GT-RAIN/test", "Rain100L/test", "Rain100H/test")  # evaluation only: nothing is tuned here
PAIRS_PER_SPLIT = 5
STREAM_FRAMES = 60
# The ONNX files, by what the table calls them; "fp32" is the reference, run by ONNX Runtime.
ONNX_FILES = {"fp32": "realtime.onnx", "fp16": "realtime.fp16.onnx",
              "fp16 (FP32 norm)": "realtime.fp16-fp32-normalization.onnx", "int8": "realtime.int8.onnx"}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT of the engines")
    parser.add_argument("--data", type=Path, default=os.environ.get("DERAIN_DATA"),
                        help="a data folder (layout in docs/training.md; default $DERAIN_DATA) with "
                             f"{', '.join(TEST_SPLITS)}; without them, the reference pairs that ship with derain")
    parser.add_argument("--onnx-dir", type=Path, help=f"use the ONNX files ({', '.join(ONNX_FILES.values())}) "
                                                      "a run wrote there instead of exporting (no PyTorch needed)")
    parser.add_argument("--work", type=Path, help="where the ONNX files and engines go (default: a temporary folder)")
    return parser.parse_args()


def prepare_onnx(work: Path, width: int, height: int, made_elsewhere: Path | None) -> dict[str, Path]:
    """The FP32, FP16 (both normalizations) and INT8 ONNX of the bundled checkpoint at the engine
    size, exported here or taken from `made_elsewhere`; each linted, the verdict printed."""
    from derain.export.graph import read_onnx
    from derain.export.lint import lint_model, sequential_steps

    if made_elsewhere is not None:
        models = {name: made_elsewhere / file for name, file in ONNX_FILES.items()}
        for path in models.values():
            if not path.is_file():
                raise DerainError(f"--onnx-dir {made_elsewhere}: no {path.name} there (a run with --work writes all four)")
    else:
        models = _export(work, width, height)
    for name, path in models.items():
        graph = read_onnx(path)  # one line, not protobuf's traceback, for a file that is not ONNX
        shape = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
        if shape[2:] != [height, width]:
            raise DerainError(f"{path}: made for {shape[3]}x{shape[2]}, not --size {width}x{height}")
        errors = [f for f in lint_model(graph) if f.level == "error"]
        steps = sum(n or 0 for n in sequential_steps(graph, "10.3").values())
        print(f"lint {name}: {len(errors)} errors, {steps:,} sequential loop steps on TensorRT 10.3")
        if errors:
            raise DerainError(f"{path}: {errors[0]}")
    return models


def _export(work: Path, width: int, height: int) -> dict[str, Path]:
    from derain.calib.quantize import quantize_onnx
    from derain.export.fp16 import convert_to_fp16
    from derain.export.onnx_export import export_onnx
    from derain.model import load_checkpoint

    model, _ = load_checkpoint()
    fp32 = export_onnx(model, work / ONNX_FILES["fp32"], height, width)
    # INT8 with the package's own ranges (shipped train-split crops, synthetic heavy rain): no data
    # folder needed, and never a test image.
    return {"fp32": fp32, "fp16": convert_to_fp16(fp32, work / ONNX_FILES["fp16"]),
            "fp16 (FP32 norm)": convert_to_fp16(fp32, work / ONNX_FILES["fp16 (FP32 norm)"], fp32_normalization=True),
            "int8": quantize_onnx(fp32, None, work / ONNX_FILES["int8"])}


def evaluation_pairs(data: Path | None) -> tuple[list, str]:
    """Real test pairs where the data folder has them, else the reference pairs that ship with the
    package (train-split crops, the same the INT8 ranges start from); with a line naming them."""
    from derain.calib.ranges import reference_groups
    from derain.data.io import files_in
    from derain.data.pairs import load_pairs

    folders = {split: data / split for split in TEST_SPLITS if data is not None and (data / split).is_dir()}
    if folders:
        chosen = {split: load_pairs(folder)[:PAIRS_PER_SPLIT] for split, folder in folders.items()}
        names = {split: [p.name for p in files_in(folder / "rain")[:PAIRS_PER_SPLIT]] for split, folder in folders.items()}
        origin = "real test pairs"
    else:
        chosen = {group: load_pairs(folder) for group, folder in reference_groups().items()}
        names = {group: [p.name for p in files_in(folder / "rain")] for group, folder in reference_groups().items()}
        origin = "reference pairs that ship with derain (train-split crops; no test split in --data)"
    pairs = [pair for group in chosen.values() for pair in group]
    listed = "; ".join(f"{group}: {', '.join(files)}" for group, files in names.items())
    return pairs, f"evaluation: {len(pairs)} {origin}, centre-padded to the engine size: {listed}"


def stream_frames(work: Path, pairs: list, width: int, height: int) -> Path:
    """A folder of STREAM_FRAMES JPEG frames of the engine's size, cut from the evaluation pairs."""
    import cv2

    from derain.data.io import to_pixels
    from derain.validate.report import centre_crop

    folder = work / "stream-frames"
    folder.mkdir(exist_ok=True)
    for index in range(STREAM_FRAMES):
        rainy = centre_crop(pairs[index % len(pairs)][0], height, width)
        cv2.imwrite(str(folder / f"{index:04d}.jpg"), cv2.cvtColor(to_pixels(rainy), cv2.COLOR_RGB2BGR))
    return folder


def _key_agreement(fp32: Path, engine_of_keys: Path, rainy: np.ndarray) -> float:
    """Fraction of the NAB sort keys of a TensorRT engine equal to ONNX Runtime FP32's, on one frame."""
    import onnx
    import onnxruntime
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    from derain.export.graph import key_outputs_model, sort_key_names
    from derain.validate.report import centre_crop

    graph = onnx.load(str(fp32))
    names = sort_key_names(graph)
    _, _, height, width = (d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim)
    frame = centre_crop(rainy, height, width).transpose(2, 0, 1)[None].astype(np.float32)
    session = onnxruntime.InferenceSession(key_outputs_model(graph, names), providers=["CPUExecutionProvider"])
    reference = session.run(names, {graph.graph.input[0].name: frame})
    with TrtRunner(EngineFromBytes(engine_of_keys.read_bytes())) as runner:
        outputs = runner.infer({graph.graph.input[0].name: frame})
    agree = sum(int((np.asarray(outputs[n]) == r).sum()) for n, r in zip(names, reference))
    return agree / sum(r.size for r in reference)


def power_and_clocks() -> str:
    """The power mode and GPU clocks as the tools report them (a Jetson's `nvpmodel -q`, a
    desktop's `nvidia-smi`), so a table says what it was measured under."""
    commands = (["nvpmodel", "-q"], ["nvidia-smi", "--query-gpu=clocks.sm,clocks.max.sm,clocks.mem,power.limit",
                                     "--format=csv"])
    lines = []
    for command in commands:
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if result.returncode == 0:
            lines.append(f"{command[0]}: " + " | ".join(line.strip() for line in result.stdout.splitlines() if line.strip()))
    return "; ".join(lines) or "power mode and clocks: neither nvpmodel nor nvidia-smi answered"


def measure(engine: Path, cuda_graph: bool, frames: Path, width: int, height: int) -> dict:
    """GPU and host times (p50/p95 after warm-up) and the stream's FPS and latency, one backend."""
    from derain.runtime.bench import run_bench
    from derain.runtime.stream import run_stream
    from derain.runtime.tensorrt_backend import TensorRTBackend

    backend = TensorRTBackend(engine, cuda_graph=cuda_graph)
    try:
        timing = run_bench(backend, f"{width}x{height}", warmup=10, iterations=100)["results"][0]
        stats = run_stream(str(frames), "null", backend, status=False)
    finally:
        backend.close()
    return {**timing, "stream_fps": round(stats.fps, 1), "stream_p50_ms": round(stats.percentile_ms(stats.latency, 50), 1),
            "stream_p95_ms": round(stats.percentile_ms(stats.latency, 95), 1), "graph": backend.graph is not None}


def main() -> int:
    from derain.runtime.bench import parse_sizes

    args = _arguments()
    try:
        ((width, height),) = parse_sizes(args.size)
    except (DerainError, ValueError):  # not WxH, no pixels, or more than one size
        raise DerainError(f"--size {args.size}: expected one WIDTHxHEIGHT, e.g. 1280x720") from None
    work = args.work or Path(tempfile.mkdtemp(prefix="derain-smoke-"))
    work.mkdir(parents=True, exist_ok=True)
    models = prepare_onnx(work, width, height, args.onnx_dir)
    pairs, named = evaluation_pairs(args.data)
    print(named)
    frames = stream_frames(work, pairs, width, height)

    import onnx

    from derain.atomic import atomic_path
    from derain.engines.build import BuildOptions, build_engine
    from derain.engines.device import current_device
    from derain.engines.store import read_manifest
    from derain.export.graph import key_outputs_model, sort_key_names
    from derain.validate.report import validate

    device = current_device()  # here a machine without TensorRT stops, with one line
    clocks = power_and_clocks()
    print(f"device: {device.describe()}, TensorRT {device.tensorrt}; {clocks}")
    print(f"bounds: GPU p50 {LATENCY_BOUND_MS} ms per frame, loss {MAX_LOSS_DB} dB against FP32")
    print("| engine | CUDA graph | build s | GPU p50/p95 ms | host p50/p95 ms | stream FPS | stream p50/p95 ms "
          "| PSNR (FP32) | loss dB | sort keys = FP32 | verdict |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    results, failed = [], False
    for name, onnx_path in models.items():
        if name == "fp32":
            continue
        precision = "int8" if name == "int8" else "fp16"
        slug = onnx_path.name.removesuffix(".onnx").replace(".", "-")
        engine = build_engine(onnx_path, BuildOptions(precision=precision, store=work / "engines", name=slug))
        keys_onnx = work / f"{slug}-keys.onnx"
        graph = onnx.load(str(onnx_path))
        keys_onnx.write_bytes(key_outputs_model(graph, sort_key_names(graph)))
        keys_engine = build_engine(keys_onnx, BuildOptions(precision=precision, store=work / "engines", name=f"{slug}-keys"))
        report, _ = validate({"fp32": models["fp32"], "engine": engine}, pairs, MAX_LOSS_DB, "smoke pairs")
        entry = report.precisions["engine"]
        agreement = _key_agreement(models["fp32"], keys_engine, pairs[0][0])
        for cuda_graph in (False, True):
            row = measure(engine, cuda_graph, frames, width, height)
            slow, lossy = row["device_median_ms"] > LATENCY_BOUND_MS, entry["loss_db"] > MAX_LOSS_DB
            failed |= slow or lossy
            verdict = ("FAIL: " + ", ".join(w for w, bad in (("slow", slow), ("lossy", lossy)) if bad)) if slow or lossy else "pass"
            captured = "yes" if row["graph"] else ("refused" if cuda_graph else "no")
            print(f"| {name} | {captured} | {read_manifest(engine).build_seconds} | {row['device_median_ms']}/{row['device_p95_ms']} "
                  f"| {row['median_ms']}/{row['p95_ms']} | {row['stream_fps']} | {row['stream_p50_ms']}/{row['stream_p95_ms']} "
                  f"| {report.precisions['fp32']['psnr']:.2f} | {entry['loss_db']:+.3f} | {agreement:.5f} | {verdict} |")
            results.append({"engine": name, "cuda_graph": cuda_graph, **row, "loss_db": entry["loss_db"],
                            "sort_keys_agree": agreement, "verdict": verdict})
    with atomic_path(work / "smoke.json") as tmp:
        tmp.write_text(json.dumps({"device": device.to_dict(), "clocks": clocks, "pairs": named, "rows": results},
                                  indent=2) + "\n")
    print(json.dumps({"work": str(work), "passed": not failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DerainError as error:
        print(f"derain: error: {error}", file=sys.stderr)
        sys.exit(1)
    except ImportError as error:  # a package the documented install did not bring: one line, no traceback
        print(f"derain: error: {error} (docs/deploy.md says what to install on this machine)", file=sys.stderr)
        sys.exit(1)
