"""Build a TensorRT engine for this device from an ONNX model, with Polygraphy's loaders.

- TensorRT 11: strongly typed networks only. Precision comes from the ONNX: the FP16 ONNX
  (`derain export --fp16`) or the Q/DQ ONNX (`derain quantize`; its unquantized ops run in FP32,
  since an FP16 + Q/DQ graph needs opset 19, where QuantizeLinear takes FP16).
- TensorRT 10: the FP16 ONNX strongly typed; otherwise builder flags, FP16 on with precision
  constraints that keep LayerNorm, Softmax and the NAB sort in FP32. A Q/DQ ONNX sets INT8 too
  (explicit quantization, the rest in FP16); a plain ONNX built as INT8 uses the implicit
  calibrator (Polygraphy's Calibrator over calib.npz, cache saved beside the engine).
The timing cache is per device and reused across builds.
Written against the TensorRT 10.3 / 11 Python API; tested only where TensorRT is installed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import DerainError
from .device import DeviceInfo, current_device
from ..export.manifest import file_sha256
from .store import DEFAULT_STORE, Manifest, engine_path, save_engine, timing_cache_path

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class BuildOptions:
    precision: str = "fp16"
    calib: Path | None = None  # calib.npz, for INT8 from a plain FP32 ONNX on TensorRT 10
    store: Path = DEFAULT_STORE
    name: str | None = None  # default: the ONNX file's stem
    workspace_mib: int = 2048
    optimization_level: int = 3  # TensorRT's default; 5 searches longest
    timing_cache: Path | None = None  # default: one per device in the store


def _onnx_facts(path: Path) -> tuple[dict, bool, bool, set[str], set[str]]:
    """(input description, has Q/DQ, has FP16 tensors, names of nodes to keep in FP32, all node names)."""
    import onnx

    from ..export.manifest import read_manifest
    from ..export.precision import fp32_nodes, name_nodes

    model = onnx.load(str(path))
    name_nodes(model)
    graph = model.graph
    tensor = graph.input[0].type.tensor_type
    nodes = {node.name for node in graph.node}
    manifest = read_manifest(path)
    if manifest is not None:  # written by derain export / quantize: what it knew, not re-derived
        return (manifest.input, manifest.precision == "int8", manifest.precision == "fp16", set(manifest.fp32_nodes),
                nodes)
    description = {"name": graph.input[0].name, "shape": [d.dim_value for d in tensor.shape.dim],
                   "dtype": onnx.TensorProto.DataType.Name(tensor.elem_type).lower()}
    has_qdq = any(node.op_type == "QuantizeLinear" for node in graph.node)
    has_fp16 = any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer)
    return description, has_qdq, has_fp16, fp32_nodes(model), nodes


def onnx_node_of(layer_name: str, nodes: set[str]) -> str | None:
    """The ONNX node a TensorRT layer came from: onnx-tensorrt names a layer `<node>` or, for the
    extra layers of one node, `<node>_<counter>` (ImporterContext.hpp, generateUniqueName). The
    exporter names siblings `MatMul`, `MatMul_1`: a layer name that is itself a node is that node."""
    if layer_name in nodes:
        return layer_name
    base, _, counter = layer_name.rpartition("_")
    return base if counter.isdigit() and base in nodes else None


def _keep_fp32(network: Any, keep: set[str], nodes: set[str]) -> None:
    """TensorRT 10 builder-flag path: pin the policy's FP32 nodes. Only layers with float outputs
    that are not shape tensors, as Polygraphy's `debug precision` does: under "obey", FP32 on a
    bool or int layer fails the build (NVIDIA/TensorRT#3570)."""
    import tensorrt as trt

    floats = (trt.float16, trt.float32)
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        outputs = [layer.get_output(i) for i in range(layer.num_outputs)]
        if onnx_node_of(layer.name, nodes) not in keep or not outputs:
            continue
        if any(t.dtype not in floats or t.is_shape_tensor for t in outputs):
            continue
        layer.precision = trt.float32
        for output in range(layer.num_outputs):
            layer.set_output_type(output, trt.float32)


def check_precision(precision: str, has_qdq: bool, has_fp16: bool, trt_major: int, calib: Path | None,
                    onnx_path: Path) -> None:
    """Refuse a --precision the graph cannot give: strongly typed builds take precision from the
    graph, so an FP16 ONNX built "int8" would be an FP16 engine under an int8 name."""
    kind = "a Q/DQ (INT8)" if has_qdq else "an FP16" if has_fp16 else "an FP32"
    if has_qdq and precision != "int8" or has_fp16 and precision != "fp16":
        raise DerainError(f"{onnx_path}: {kind} ONNX builds only --precision {'int8' if has_qdq else 'fp16'}")
    if has_qdq or has_fp16 or precision == "fp32":
        return
    if trt_major >= 11:
        made_by = "Q/DQ (derain quantize)" if precision == "int8" else "FP16 (derain export --fp16)"
        raise DerainError(f"{onnx_path}: TensorRT {trt_major} builds {precision} only from a {made_by} ONNX")
    if precision == "int8" and calib is None:
        raise DerainError(f"{onnx_path}: INT8 from an ONNX without Q/DQ needs --calib calib.npz")


def calibration_cache_path(target: Path, onnx_path: Path, calib: Path) -> Path:
    """The implicit calibrator's cache, named after the ONNX and the calibration frames it was made
    from: Polygraphy reuses any existing cache as is, so a new --calib must not find the old one."""
    return target.with_suffix(f".{(file_sha256(onnx_path)[:8])}-{file_sha256(calib)[:8]}.calib")


def trtexec_command(onnx_path: Path, engine: Path, options: BuildOptions, strongly_typed: bool, cache: Path,
                    keep: set[str], calibration_cache: Path | None) -> str:
    """The trtexec line that builds the same engine, for the manifest: a build anyone can reproduce
    without derain (on TensorRT 10 weakly typed builds, trtexec pins every listed layer, where
    derain skips the non-float ones)."""
    words = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine}",
             f"--memPoolSize=workspace:{options.workspace_mib}M",
             f"--builderOptimizationLevel={options.optimization_level}", f"--timingCacheFile={cache}"]
    if strongly_typed:
        words.append("--stronglyTyped")
    else:
        words.append("--fp16")
        words += ["--int8"] if options.precision == "int8" else []
        words += [f"--calib={calibration_cache}"] if calibration_cache else []
        if keep:
            words += ["--precisionConstraints=obey", "--layerPrecisions=" + ",".join(f"{n}:fp32" for n in sorted(keep))]
    return " ".join(words)


def build_engine(onnx_path: Path, options: BuildOptions) -> Path:
    if options.precision not in PRECISIONS:
        raise DerainError(f"--precision {options.precision}: choose from {', '.join(PRECISIONS)}")
    if not onnx_path.is_file():
        raise DerainError(f"{onnx_path}: no such ONNX model")
    device: DeviceInfo = current_device()  # first: a one-line error where TensorRT or the GPU is missing

    import tensorrt as trt
    from polygraphy.backend.trt import (Calibrator, CreateConfig, PostprocessNetwork, engine_bytes_from_network,
                                        network_from_onnx_path)
    description, has_qdq, has_fp16, keep, nodes = _onnx_facts(onnx_path)
    major = int(trt.__version__.split(".")[0])
    check_precision(options.precision, has_qdq, has_fp16, major, options.calib, onnx_path)
    # Strongly typed where the graph carries all its precision, and always on TensorRT 11+. On 10, a
    # Q/DQ graph builds better weakly typed: what is not quantized runs in FP16, not FP32.
    strongly_typed = major >= 11 or has_fp16 or options.precision == "fp32"

    cache = options.timing_cache or timing_cache_path(options.store, device)
    target = engine_path(options.store, device, options.name or onnx_path.stem.split(".")[0], options.precision)
    config_args: dict[str, Any] = {
        "load_timing_cache": str(cache) if cache.is_file() else None,
        "memory_pool_limits": {trt.MemoryPoolType.WORKSPACE: options.workspace_mib << 20},
        "builder_optimization_level": options.optimization_level,
        # TF32 for FP32 layers, as trtexec does unless --noTF32 (Polygraphy's default is off).
        "tf32": True,
    }
    calibration_cache = None
    network = network_from_onnx_path(str(onnx_path), strongly_typed=strongly_typed)
    if not strongly_typed:  # TensorRT 10: builder flags, FP32 islands by precision constraints
        config_args.update(fp16=True, precision_constraints="obey")
        network = PostprocessNetwork(network, lambda network: _keep_fp32(network, keep, nodes))
        if options.precision == "int8" and has_qdq:
            config_args.update(int8=True)  # explicit quantization: the Q/DQ scales are used as they are
        elif options.precision == "int8" and options.calib is not None:
            from ..calib.frames import load_calibration

            frames = load_calibration(options.calib)
            loader = [{description["name"]: frames[i : i + 1]} for i in range(len(frames))]  # re-iterable
            calibration_cache = calibration_cache_path(target, onnx_path, options.calib)
            config_args.update(int8=True, calibrator=Calibrator(loader, cache=str(calibration_cache)))

    started = time.perf_counter()
    cache.parent.mkdir(parents=True, exist_ok=True)
    serialized = engine_bytes_from_network(network, config=CreateConfig(**config_args), save_timing_cache=str(cache))
    manifest = Manifest(
        name=target.name.split(".")[0], precision=options.precision, device=device, input=description,
        onnx_sha256=file_sha256(onnx_path),
        build={"strongly_typed": strongly_typed, "qdq": has_qdq, "fp16_onnx": has_fp16,
               "workspace_mib": options.workspace_mib, "optimization_level": options.optimization_level,
               "tf32": True, "onnx": str(onnx_path),
               "calib": str(options.calib) if options.calib else None,
               "calib_sha256": file_sha256(options.calib) if options.calib else None,
               "trtexec": trtexec_command(onnx_path, target, options, strongly_typed, cache, keep, calibration_cache)},
        build_seconds=round(time.perf_counter() - started, 1),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return save_engine(bytes(serialized), manifest, target)
