"""Choose and open a backend. Only the chosen backend's heavy imports are loaded (torch stays
unloaded unless the torch backend is chosen)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from ..errors import DerainError
from .backend import DEFAULT_MAX_PIXELS, Backend

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch", "triton")


def open_backend(kind: str = "auto", engine: Path | None = None, onnx: Path | None = None,
                 checkpoint: Path | None = None, device: str = "cpu", memory: str = "auto",
                 cuda_graph: bool = False, url: str | None = None, model: str = "derain",
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> Backend:
    """auto: the TensorRT engine if given, else the ONNX model (ONNX Runtime), else a Triton server
    at `url`, else torch. `max_pixels`: larger frames of an any-size backend run as tiles."""
    backend = _open(kind, engine, onnx, checkpoint, device, memory, cuda_graph, url, model)
    backend.max_pixels = max_pixels
    return backend


def set_threads(threads: int) -> None:
    """CPU threads for torch and ONNX Runtime: on a busy 2-core machine torch with 2 threads ran up
    to 70x slower than with 1 (OpenMP spin-waits)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # ONNX Runtime's CPU provider and torch read it
    if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(threads)


def _open(kind: str, engine: Path | None, onnx: Path | None, checkpoint: Path | None, device: str, memory: str,
          cuda_graph: bool, url: str | None, model: str) -> Backend:
    if kind == "auto":
        kind = "tensorrt" if engine else "onnxruntime" if onnx else "triton" if url else "torch"
    if kind == "triton":
        if url is None:
            raise DerainError("--backend triton needs --url grpc://host:8001 (a server with a `derain triton` repository)")
        from .triton_backend import TritonBackend

        return TritonBackend(url, model)
    if kind == "tensorrt":
        if engine is None:
            raise DerainError("--backend tensorrt needs --engine (see `derain build`)")
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(engine, memory=memory, cuda_graph=cuda_graph)
    if kind == "onnxruntime":
        if onnx is None:
            raise DerainError("--backend onnxruntime needs --onnx (see `derain export`)")
        if not onnx.is_file():
            raise DerainError(f"{onnx}: no such ONNX model")
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(onnx)
    if kind == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend(checkpoint, device=device)
    raise DerainError(f"unknown backend {kind!r} (choose from {', '.join(BACKENDS)})")
