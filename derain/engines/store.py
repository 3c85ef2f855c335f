"""The engine store: engines/<device-slug>/<name>.<precision>.engine with a JSON manifest beside
each (what built it, for which GPU, from which ONNX), and one timing cache per device."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..atomic import atomic_path
from ..errors import DerainError
from .device import DeviceInfo

DEFAULT_STORE = Path("engines")


@dataclass
class Manifest:
    name: str
    precision: str  # fp32 | fp16 | int8
    device: DeviceInfo
    input: dict  # {"name": ..., "shape": [...], "dtype": ...}
    onnx_sha256: str
    build: dict  # options: strongly typed, workspace, optimization level, ...
    build_seconds: float
    created: str

    def to_dict(self) -> dict:
        data = asdict(self)
        data["device"] = self.device.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Manifest":
        return cls(**{**data, "device": DeviceInfo(**data["device"])})


def engine_path(store: Path, device: DeviceInfo, name: str, precision: str) -> Path:
    return store / device.slug / f"{name}.{precision}.engine"


def manifest_path(engine: Path) -> Path:
    return engine.with_suffix(".json")


def timing_cache_path(store: Path, device: DeviceInfo) -> Path:
    return store / device.slug / "timing.cache"


def save_engine(engine_bytes: bytes, manifest: Manifest, path: Path) -> Path:
    """Engine and manifest, each written atomically (the manifest last: it vouches for the engine)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(engine_bytes)
    with atomic_path(manifest_path(path)) as tmp:
        tmp.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    return path


def read_manifest(engine: Path) -> Manifest:
    path = manifest_path(engine)
    if not engine.is_file():
        raise DerainError(f"{engine}: no such engine")
    try:
        return Manifest.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise DerainError(f"{engine}: no manifest ({path.name}) beside it; rebuild with `derain build`") from None
    except (ValueError, TypeError, KeyError) as error:
        raise DerainError(f"{path}: not an engine manifest ({error})") from error


def check_engine(engine: Path, device: DeviceInfo | None = None) -> Manifest:
    """The engine's manifest, if it was built for this GPU and TensorRT (default: this machine's);
    else a one-line error saying what it was built for and what differs."""
    from .device import current_device

    manifest = read_manifest(engine)
    built = manifest.device
    if device is None:
        try:
            device = current_device()
        except DerainError as error:
            raise DerainError(f"{engine}: built for {built.gpu} (sm {built.compute_capability}, TensorRT "
                              f"{built.tensorrt}), but {error}") from error
    problem = device.mismatch(built)
    if problem:
        raise DerainError(f"{engine}: built for {problem}; rebuild it here with `derain build`")
    return manifest


def list_store(store: Path = DEFAULT_STORE) -> list[Manifest]:
    return [read_manifest(engine) for engine in sorted(store.glob("*/*.engine"))]
