"""`derain triton`: a Triton Inference Server model repository for a fleet of cameras.

Clients send what cameras produce, uint8 BGR frames (N, H, W, 3), and get uint8 BGR frames back:

- `network`: the derain engine as `tensorrt_plan` (GPU servers) or the ONNX as
  `onnxruntime_onnx`, with Triton's dynamic batcher (preferred batch N, a queue delay), instance
  groups and a warm-up batch, so the first camera does not pay for kernel selection;
- `derain` (the model clients call): an ensemble of `preprocess` (uint8 BGR -> float RGB in
  [0, 1], NCHW), `network` and `postprocess` (clip, round, uint8 BGR); pre- and post-processing
  are two small ONNX graphs doing what derain's own `from_pixels` / `to_pixels` do, exactly;
- or, with `python_backend`, `derain` is one Python-backend model running derain's ONNX Runtime
  backend (the variant the CPU-only `tritonserver` of nvidia-pytriton can serve).

Triton batches only a model whose first dimension is dynamic: the engine or ONNX must come from
`derain export --dynamic-batch --batch N` (N becomes max_batch_size). Every config.pbtxt is
checked against Triton's model-config protobuf in tests/test_triton.py."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_path
from ..errors import DerainError
from ..export.manifest import batch_range, read_manifest
from ..export.names import INPUT_NAME, OUTPUT_NAME

FRAMES_IN, FRAMES_OUT = "frames", "derained_frames"  # what clients send and get: uint8 BGR (N, H, W, 3)
ENSEMBLE, NETWORK, PRE, POST = "derain", "network", "preprocess", "postprocess"
TYPES = {"float": "TYPE_FP32", "float16": "TYPE_FP16"}


@dataclass
class TritonOptions:
    instances: int = 1  # model instances per GPU (or on the CPU): more overlap copies and compute
    kind: str = "gpu"  # gpu | cpu: where the instances run
    queue_delay_us: int = 2000  # how long the batcher waits to fill a batch
    python_backend: bool = False


def _text(value: object, indent: int = 0) -> str:
    """A nested dict/list as protobuf text format: lists of dicts repeat their field, strings quote,
    and enum names are given as `Enum("KIND_GPU")`."""
    pad = "  " * indent
    lines = []
    for key, item in value.items():  # type: ignore[attr-defined]
        for element in item if isinstance(item, list) and item and isinstance(item[0], dict) else [item]:
            if isinstance(element, dict):
                lines += [f"{pad}{key} {{", _text(element, indent + 1), f"{pad}}}"]
            else:
                lines.append(f"{pad}{key}: {_scalar(element)}")
    return "\n".join(line for line in lines if line)


class Enum(str):
    """An enum value in protobuf text format (written bare, not quoted)."""


def _scalar(value: object) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[ " + ", ".join(_scalar(v) for v in value) + " ]"
    return str(value)


def _tensor(name: str, data_type: str, dims: list[int]) -> dict:
    return {"name": name, "data_type": Enum(data_type), "dims": dims}


def _model_input(path: Path) -> tuple[dict, str]:
    """The network's input description and its Triton platform, from derain's manifest."""
    if path.suffix == ".engine":
        from ..engines.store import read_manifest as read_engine_manifest

        return read_engine_manifest(path).input, "tensorrt_plan"
    if path.suffix == ".onnx":
        manifest = read_manifest(path)
        if manifest is None:
            raise DerainError(f"{path}: no derain manifest (.json) beside it; export it with derain export")
        return manifest.input, "onnxruntime_onnx"
    raise DerainError(f"{path}: expected a TensorRT .engine or an .onnx")


def _batcher(most: int, options: TritonOptions) -> dict:
    return {"max_batch_size": most,
            "dynamic_batching": {"preferred_batch_size": [most], "max_queue_delay_microseconds": options.queue_delay_us},
            "instance_group": [{"count": options.instances, "kind": Enum(f"KIND_{options.kind.upper()}")}]}


def _frames(height: int, width: int) -> tuple[dict, dict]:
    return _tensor(FRAMES_IN, "TYPE_UINT8", [height, width, 3]), _tensor(FRAMES_OUT, "TYPE_UINT8", [height, width, 3])


def _write_config(folder: Path, config: dict) -> None:
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(_text(config) + "\n")


def pixel_graphs(height: int, width: int, dtype: str = "float") -> tuple[bytes, bytes]:
    """(preprocess, postprocess) ONNX models with a dynamic batch: uint8 BGR (N, H, W, 3) <-> float
    RGB (N, 3, H, W); the same arithmetic as data/io.py's from_pixels / to_pixels (a float32
    division by 255; clip, x255, round half to even)."""
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np

    float_type = TensorProto.FLOAT16 if dtype == "float16" else TensorProto.FLOAT
    rgb = numpy_helper.from_array(np.array([2, 1, 0], np.int64), "bgr_to_rgb")
    scale = numpy_helper.from_array(np.array(255.0, np.float32), "scale")
    low, high = numpy_helper.from_array(np.array(0.0, np.float32), "low"), numpy_helper.from_array(np.array(1.0, np.float32), "high")
    opset = [helper.make_opsetid("", 17)]
    pre = helper.make_graph([
        helper.make_node("Cast", [FRAMES_IN], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["as_float", "scale"], ["unit"]),
        helper.make_node("Gather", ["unit", "bgr_to_rgb"], ["rgb"], axis=3),
        helper.make_node("Transpose", ["rgb"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["nchw"], [INPUT_NAME], to=float_type),
    ], PRE, [helper.make_tensor_value_info(FRAMES_IN, TensorProto.UINT8, ["batch", height, width, 3])],
        [helper.make_tensor_value_info(INPUT_NAME, float_type, ["batch", 3, height, width])], [rgb, scale])
    post = helper.make_graph([
        helper.make_node("Cast", [OUTPUT_NAME], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("Clip", ["as_float", "low", "high"], ["clipped"]),
        helper.make_node("Gather", ["clipped", "bgr_to_rgb"], ["bgr"], axis=1),
        helper.make_node("Transpose", ["bgr"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Mul", ["nhwc", "scale"], ["levels"]),
        helper.make_node("Round", ["levels"], ["rounded"]),
        helper.make_node("Cast", ["rounded"], [FRAMES_OUT], to=TensorProto.UINT8),
    ], POST, [helper.make_tensor_value_info(OUTPUT_NAME, float_type, ["batch", 3, height, width])],
        [helper.make_tensor_value_info(FRAMES_OUT, TensorProto.UINT8, ["batch", height, width, 3])],
        [rgb, scale, low, high])
    return (helper.make_model(pre, opset_imports=opset).SerializeToString(),
            helper.make_model(post, opset_imports=opset).SerializeToString())


def write_repository(model: Path, output: Path, options: TritonOptions) -> Path:
    """Write the repository into `output` (a new folder, made whole under a temporary name)."""
    if output.exists():
        raise DerainError(f"{output}: already exists; choose a new folder for the repository")
    if not model.is_file():
        raise DerainError(f"{model}: no such file")
    if options.instances < 1:
        raise DerainError(f"--instances {options.instances}: must be at least 1")
    description, platform = _model_input(model)
    if description["shape"][0] != -1:
        raise DerainError(f"{model}: a static batch of {description['shape'][0]}; Triton's dynamic batcher needs a "
                          "dynamic one: derain export --dynamic-batch --batch N")
    if options.python_backend and platform != "onnxruntime_onnx":
        raise DerainError(f"{model}: the Python-backend variant runs derain's ONNX Runtime backend: give --onnx")
    _, most = batch_range(description)
    _, _, height, width = description["shape"]
    frames_in, frames_out = _frames(height, width)
    with atomic_path(output) as tmp:
        tmp.mkdir()
        if options.python_backend:
            folder = tmp / ENSEMBLE
            _write_config(folder, {"name": ENSEMBLE, "backend": "python", **_batcher(most, options),
                                   "input": [frames_in], "output": [frames_out]})
            shutil.copyfile(Path(__file__).with_name("python_model.py"), folder / "1" / "model.py")
            shutil.copyfile(model, folder / "1" / "model.onnx")
            shutil.copyfile(model.with_suffix(".json"), folder / "1" / "model.json")
            return output
        dtype = TYPES[description["dtype"]]
        rainy = _tensor(INPUT_NAME, dtype, [3, height, width])
        derained = _tensor(OUTPUT_NAME, dtype, [3, height, width])
        warmup = {"name": "warm-up", "batch_size": most,
                  "inputs": {"key": INPUT_NAME, "value": {"data_type": Enum(dtype), "dims": [3, height, width],
                                                         "zero_data": True}}}
        _write_config(tmp / NETWORK, {"name": NETWORK, "platform": platform, **_batcher(most, options),
                                      "input": [rainy], "output": [derained], "model_warmup": [warmup]})
        shutil.copyfile(model, tmp / NETWORK / "1" / ("model.plan" if platform == "tensorrt_plan" else "model.onnx"))
        if platform == "tensorrt_plan":  # which TensorRT and GPU built the plan (Triton ignores the file)
            from ..engines.store import manifest_path

            shutil.copyfile(manifest_path(model), tmp / NETWORK / "1" / "model.json")
        pre, post = pixel_graphs(height, width, description["dtype"])
        for name, graph, inputs, outputs in ((PRE, pre, frames_in, rainy), (POST, post, derained, frames_out)):
            _write_config(tmp / name, {"name": name, "platform": "onnxruntime_onnx", **_batcher(most, options),
                                       "input": [inputs], "output": [outputs]})
            (tmp / name / "1" / "model.onnx").write_bytes(graph)
        steps = [{"model_name": PRE, "model_version": -1, "input_map": {"key": FRAMES_IN, "value": FRAMES_IN},
                  "output_map": {"key": INPUT_NAME, "value": "rainy_tensor"}},
                 {"model_name": NETWORK, "model_version": -1, "input_map": {"key": INPUT_NAME, "value": "rainy_tensor"},
                  "output_map": {"key": OUTPUT_NAME, "value": "derained_tensor"}},
                 {"model_name": POST, "model_version": -1,
                  "input_map": {"key": OUTPUT_NAME, "value": "derained_tensor"},
                  "output_map": {"key": FRAMES_OUT, "value": FRAMES_OUT}}]
        _write_config(tmp / ENSEMBLE, {"name": ENSEMBLE, "platform": "ensemble", "max_batch_size": most,
                                       "input": [frames_in], "output": [frames_out],
                                       "ensemble_scheduling": {"step": steps}})
    return output
