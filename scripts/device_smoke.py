"""Once per device: the bundled `realtime` at 1280x720 as FP16 and INT8 TensorRT engines, through
the shipped TensorRT backend, against ONNX Runtime FP32. One table: build seconds, latency p50/p95
and FPS (frame in to frame out, as `derain bench`), PSNR on real test pairs and the loss against
FP32, and how many NAB sort keys agree with FP32's. Exit 1 when an engine is slower than its bound
or loses more than MAX_LOSS_DB; exit 0 when both pass.

    bash scripts/device-smoke.sh [--size 1280x720] [--data ../shared/data] [--work DIR]

Before TensorRT is touched it exports, converts, quantizes and lints on the CPU (the lint must
count 0 sequential loop steps for TensorRT 10.3), so a CPU machine runs it up to the TensorRT
check and stops there with one line (tests/test_device_smoke.py does).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

from derain.calib.quantize import quantize_onnx
from derain.data.pairs import load_pairs
from derain.engines.build import BuildOptions, build_engine
from derain.engines.device import current_device
from derain.engines.store import read_manifest
from derain.errors import DerainError
from derain.export.fp16 import convert_to_fp16
from derain.export.lint import lint_model, sequential_steps
from derain.export.onnx_export import export_onnx
from derain.export.parity import key_outputs_model, sort_key_names
from derain.model import load_checkpoint
from derain.runtime.bench import run_bench
from derain.runtime.tensorrt_backend import TensorRTBackend
from derain.validate.report import centre_crop, validate

# Per-frame latency bounds at 1280x720, by the GPU name CUDA reports. Every Jetson Orin module
# reports "Orin": 33.3 ms is the product's promise of 30 FPS on an Orin NX / Nano (JetPack 6). Any
# other GPU (desktop, datacenter) is several times an Orin NX, so the same bound catches a graph
# that fell off the fast path (a loop, FP32 everywhere) without flagging a healthy engine.
LATENCY_BOUND_MS = {"Orin": 33.3}
DEFAULT_BOUND_MS = 33.3
MAX_LOSS_DB = 0.3
TEST_PAIRS = ("GT-RAIN/test", "Rain100L/test", "Rain100H/test")  # evaluation only: nothing is tuned here
PAIRS_PER_SPLIT = 5


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT of the engines")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--work", type=Path, help="where the ONNX files and engines go (default: a temporary folder)")
    return parser.parse_args()


def onnx_half(work: Path, width: int, height: int) -> dict[str, Path]:
    """FP32, FP16 and INT8 ONNX of the bundled checkpoint, linted; the lint's verdict printed."""
    model, _ = load_checkpoint()
    fp32 = export_onnx(model, work / "realtime.onnx", height, width)
    # INT8 with the package's own ranges (shipped train-split crops, synthetic heavy rain): no data
    # folder needed, and never a test image.
    models = {"fp32": fp32, "fp16": convert_to_fp16(fp32, work / "realtime.fp16.onnx"),
              "int8": quantize_onnx(fp32, None, work / "realtime.int8.onnx")}
    for precision, path in models.items():
        graph = onnx.load(str(path))
        errors = [f for f in lint_model(graph) if f.level == "error"]
        steps = sum(n or 0 for n in sequential_steps(graph, "10.3").values())
        print(f"lint {precision}: {len(errors)} errors, {steps:,} sequential loop steps on TensorRT 10.3")
        if errors:
            raise DerainError(f"{path}: {errors[0]}")
    return models


def _pairs(data: Path) -> tuple[list, str]:
    folders = [data / split for split in TEST_PAIRS if (data / split).is_dir()]
    if not folders:
        return load_pairs("synthetic"), "synthetic pairs (no real data here)"
    pairs = [pair for folder in folders for pair in load_pairs(folder)[:PAIRS_PER_SPLIT]]
    return pairs, f"{len(pairs)} real test pairs of {', '.join(TEST_PAIRS)} (centre-padded to the engine size)"


def _key_agreement(fp32: Path, engine_of_keys: Path, rainy: np.ndarray) -> float:
    """Fraction of the NAB sort keys of a TensorRT engine equal to ONNX Runtime FP32's, on one frame."""
    import onnxruntime
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

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


def main() -> int:
    args = _arguments()
    width, height = (int(v) for v in args.size.lower().split("x"))
    work = args.work or Path(tempfile.mkdtemp(prefix="derain-smoke-"))
    work.mkdir(parents=True, exist_ok=True)
    models = onnx_half(work, width, height)
    device = current_device()  # here a CPU machine stops, with one line
    bound = LATENCY_BOUND_MS.get(device.gpu, DEFAULT_BOUND_MS)
    pairs, data = _pairs(args.data)
    print(f"device: {device.describe()}, TensorRT {device.tensorrt}; bound {bound} ms per frame, "
          f"{MAX_LOSS_DB} dB; {data}")
    print("| engine | build s | p50 ms | p95 ms | FPS | PSNR (FP32) | loss dB | sort keys = FP32 | verdict |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    failed = False
    for precision in ("fp16", "int8"):
        engine = build_engine(models[precision], BuildOptions(precision=precision, store=work / "engines"))
        keys_onnx = work / f"realtime-keys.{precision}.onnx"
        graph = onnx.load(str(models[precision]))
        keys_onnx.write_bytes(key_outputs_model(graph, sort_key_names(graph)))
        keys_engine = build_engine(keys_onnx, BuildOptions(precision=precision, store=work / "engines",
                                                           name=f"realtime-keys-{precision}"))
        backend = TensorRTBackend(engine)
        try:
            timing = run_bench(backend, f"{width}x{height}", warmup=10, iterations=100)["results"][0]
        finally:
            backend.close()
        report, _ = validate({"fp32": models["fp32"], "engine": engine}, pairs, MAX_LOSS_DB, data)
        entry = report.precisions["engine"]
        agreement = _key_agreement(models["fp32"], keys_engine, pairs[0][0])
        slow, lossy = timing["median_ms"] > bound, entry["loss_db"] > MAX_LOSS_DB
        failed |= slow or lossy
        verdict = "FAIL: " + ", ".join(w for w, bad in (("slow", slow), ("lossy", lossy)) if bad) if slow or lossy else "pass"
        print(f"| {precision} | {read_manifest(engine).build_seconds} | {timing['median_ms']} | {timing['p95_ms']} | "
              f"{timing['fps']} | {report.precisions['fp32']['psnr']:.2f} | {entry['loss_db']:+.3f} | "
              f"{agreement:.5f} | {verdict} |")
    print(json.dumps({"work": str(work), "passed": not failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DerainError as error:
        print(f"derain: error: {error}", file=sys.stderr)
        sys.exit(1)
