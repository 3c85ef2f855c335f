"""Build a TensorRT engine for this device from an ONNX model, with Polygraphy's loaders.

Every build is strongly typed, on TensorRT 10 as on 11: the engine's precision is the graph's,
as TensorRT's explicit-quantization guide asks ("use explicit quantization with strong typing;
precision-control build flags are not required and should not be specified"; its FP16, INT8 and
precision-constraint flags are deprecated in 10.12 and gone in 11). So
- fp32: the exported ONNX;
- fp16: the FP16 ONNX (`derain export --fp16`); an FP32 ONNX is converted to it first by the same
  conversion and precision policy (export/fp16.py), kept in the store beside the engine;
- int8: the Q/DQ ONNX (`derain quantize`), whose unquantized part is FP16 and whose precision
  policy nodes are FP32 in the graph itself.
No layer is pinned by name and no implicit calibrator is used (setInt8Calibrator is deprecated
since TensorRT 10.1). TF32 stays off (TF32_DEFAULT: benchmarks/tf32.py). The timing cache is per
device and reused across builds. Written against the TensorRT 10.3 / 11 Python API; tested only
where TensorRT is installed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import DerainError
from .device import DeviceInfo, current_device
from ..export.manifest import batch_range, file_sha256, input_description
from .store import DEFAULT_STORE, Manifest, engine_path, save_engine, timing_cache_path

PRECISIONS = ("fp32", "fp16", "int8")
# TF32 rounds the inputs of the FP32 MatMuls to 10-bit mantissas, the NAB's similarity MatMul
# among them; benchmarks/tf32.py measures what that does to the sort keys and PSNR.
TF32_DEFAULT = False


@dataclass
class BuildOptions:
    precision: str = "fp16"
    store: Path = DEFAULT_STORE
    name: str | None = None  # default: the ONNX file's stem
    workspace_mib: int = 2048
    optimization_level: int = 3  # TensorRT's default; 5 searches longest
    timing_cache: Path | None = None  # default: one per device in the store
    tf32: bool = TF32_DEFAULT


def graph_precision(path: Path) -> tuple[dict, str]:
    """(input description, the precision the graph carries: "int8" with Q/DQ, "fp16" with FP16
    weights, else "fp32"), from derain's manifest where there is one."""
    from onnx import TensorProto

    from ..export.graph import read_onnx
    from ..export.manifest import read_manifest

    manifest = read_manifest(path)
    if manifest is not None:  # written by derain export / quantize: what it knew, not re-derived
        return manifest.input, manifest.precision
    model = read_onnx(path)
    graph = model.graph
    description = input_description(model)
    if any(node.op_type == "QuantizeLinear" for node in graph.node):
        return description, "int8"
    return description, "fp16" if any(i.data_type == TensorProto.FLOAT16 for i in graph.initializer) else "fp32"


def check_precision(precision: str, carried: str, onnx_path: Path) -> None:
    """Refuse a --precision the graph cannot give (an FP16 ONNX built "int8" would be an FP16 engine
    under an int8 name). FP16 from an FP32 ONNX is allowed: the builder converts it first."""
    if precision == carried or precision == "fp16" and carried == "fp32":
        return
    if precision == "int8":
        raise DerainError(f"{onnx_path}: an {carried.upper()} ONNX has no INT8 scales; quantize it first: "
                          f"derain calib --source FRAMES --height H --width W -o calib.npz && derain quantize "
                          f"{onnx_path} --calib calib.npz -o {onnx_path.with_suffix('.int8.onnx')}")
    made = "a Q/DQ (INT8)" if carried == "int8" else f"an {carried.upper()}"
    raise DerainError(f"{onnx_path}: {made} ONNX builds only --precision {carried}")


def profile_shapes(description: dict) -> dict[str, tuple[int, ...]] | None:
    """min / opt / max input shapes of the optimization profile a dynamic batch needs: 1 / N / N
    (TensorRT tunes its kernels for opt, the batch a multi-stream or Triton server fills); None
    for a static input."""
    if description["shape"][0] != -1:
        return None
    least, most = batch_range(description)
    dims = tuple(description["shape"][1:])
    return {"min": (least, *dims), "opt": (most, *dims), "max": (most, *dims)}


def trtexec_command(onnx_path: Path, engine: Path, options: BuildOptions, cache: Path,
                    description: dict | None = None) -> str:
    """The trtexec line that builds the same engine, for the manifest: a build anyone can reproduce
    without derain (trtexec enables TF32 unless told --noTF32)."""
    words = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine}",
             f"--memPoolSize=workspace:{options.workspace_mib}M",
             f"--builderOptimizationLevel={options.optimization_level}", f"--timingCacheFile={cache}", "--stronglyTyped"]
    shapes = profile_shapes(description) if description else None
    if description and shapes:
        words += [f"--{kind}Shapes={description['name']}:{'x'.join(map(str, shape))}" for kind, shape in shapes.items()]
    return " ".join(words + ([] if options.tf32 else ["--noTF32"]))


def build_engine(onnx_path: Path, options: BuildOptions) -> Path:
    if options.precision not in PRECISIONS:
        raise DerainError(f"--precision {options.precision}: choose from {', '.join(PRECISIONS)}")
    if not onnx_path.is_file():
        raise DerainError(f"{onnx_path}: no such ONNX model")
    description, carried = graph_precision(onnx_path)
    check_precision(options.precision, carried, onnx_path)
    device: DeviceInfo = current_device()  # a one-line error where TensorRT or the GPU is missing

    import tensorrt as trt
    from polygraphy.backend.trt import CreateConfig, Profile, engine_bytes_from_network, network_from_onnx_path

    target = engine_path(options.store, device, options.name or onnx_path.stem.split(".")[0], options.precision)
    graph = onnx_path
    if options.precision != carried:  # fp16 from an FP32 ONNX: the FP16 graph is kept in the store beside the engine
        from ..export.fp16 import convert_to_fp16

        target.parent.mkdir(parents=True, exist_ok=True)
        graph = convert_to_fp16(onnx_path, target.with_suffix(".graph.onnx"))  # its manifest: .graph.json
    cache = options.timing_cache or timing_cache_path(options.store, device)
    shapes = profile_shapes(description)
    config = CreateConfig(
        profiles=[Profile().add(description["name"], **shapes)] if shapes else None,
        tf32=options.tf32,
        load_timing_cache=str(cache) if cache.is_file() else None,
        memory_pool_limits={trt.MemoryPoolType.WORKSPACE: options.workspace_mib << 20},
        builder_optimization_level=options.optimization_level,
    )
    network = network_from_onnx_path(str(graph), strongly_typed=True)
    started = time.perf_counter()
    cache.parent.mkdir(parents=True, exist_ok=True)
    serialized = engine_bytes_from_network(network, config=config, save_timing_cache=str(cache))
    manifest = Manifest(
        name=target.name.split(".")[0], precision=options.precision, device=device, input=description,
        onnx_sha256=file_sha256(onnx_path),
        build={"strongly_typed": True, "workspace_mib": options.workspace_mib,
               "optimization_level": options.optimization_level, "tf32": options.tf32, "onnx": str(onnx_path),
               "built_from": str(graph), "trtexec": trtexec_command(graph, target, options, cache, description)},
        build_seconds=round(time.perf_counter() - started, 1),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return save_engine(bytes(serialized), manifest, target)
