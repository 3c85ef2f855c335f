"""A JSON sidecar for every ONNX the toolkit writes (`model.onnx` -> `model.json`), as engines have:
what the graph takes, at which precision, which nodes stay FP32, and where it came from. Later
stages (quantize, build, validate) read it instead of re-deriving what the earlier one knew."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..atomic import atomic_path
from ..errors import DerainError
from .graph import opset_version


@dataclass
class OnnxManifest:
    input: dict  # {"name", "shape" (-1 for a dynamic batch), "dtype", "batch": [least, most]}
    precision: str  # fp32 | fp16 | int8 (Q/DQ)
    opset: int
    fp32_nodes: list[str]  # what the precision policy keeps FP32 (export/precision.py)
    config: str  # model config name
    checkpoint_sha256: str | None  # the weights it was exported from
    source: str | None = None  # the ONNX it was converted from (fp16, int8)
    extra: dict = field(default_factory=dict)  # e.g. the calibration frames' hash
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(onnx_path: str | Path) -> Path:
    return Path(onnx_path).with_suffix(".json")


def write_manifest(onnx_path: str | Path, manifest: OnnxManifest) -> Path:
    path = manifest_path(onnx_path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return path


def read_manifest(onnx_path: str | Path) -> OnnxManifest | None:
    """The sidecar of `onnx_path`, or None for an ONNX the toolkit did not write."""
    path = manifest_path(onnx_path)
    if not path.is_file():
        return None
    try:
        return OnnxManifest(**json.loads(path.read_text()))
    except (ValueError, TypeError) as error:
        raise DerainError(f"{path}: not an ONNX manifest ({error})") from error


def batch_range(description: dict) -> tuple[int, int]:
    """(least, most) images per inference of a described input; manifests from before batch ranges
    were recorded held static shapes only."""
    least, most = description.get("batch") or (description["shape"][0],) * 2
    return int(least), int(most)


def input_description(model, max_batch: int | None = None) -> dict:  # noqa: ANN001 - onnx.ModelProto
    """What the graph's input takes. A dynamic batch dimension (export --dynamic-batch) is -1 in
    the shape and 1..max_batch in "batch"; every other dimension must be static."""
    from onnx import TensorProto

    value = model.graph.input[0]
    tensor = value.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor.shape.dim]
    if -1 in shape[1:]:
        raise DerainError(f"dynamic input shape {shape}: only the batch may be dynamic; export a static height and "
                          "width (derain export --height H --width W)")
    if shape[0] == -1 and max_batch is None:
        raise DerainError(f"input {value.name} has a dynamic batch and no derain manifest (.json beside it) says how "
                          "large; export it with derain export --dynamic-batch --batch N")
    batch = [shape[0], shape[0]] if shape[0] > 0 else [1, int(max_batch)]
    return {"name": value.name, "shape": shape, "dtype": TensorProto.DataType.Name(tensor.elem_type).lower(),
            "batch": batch}


def describe(model, precision: str, config: str, checkpoint_sha256: str | None, source: str | None = None,  # noqa: ANN001
             extra: dict | None = None, max_batch: int | None = None) -> OnnxManifest:
    """The manifest of an in-memory onnx.ModelProto."""
    from .precision import fp32_nodes, name_nodes

    name_nodes(model)
    return OnnxManifest(
        input=input_description(model, max_batch),
        precision=precision, opset=opset_version(model),
        fp32_nodes=sorted(fp32_nodes(model)), config=config, checkpoint_sha256=checkpoint_sha256, source=source,
        extra=extra or {})
