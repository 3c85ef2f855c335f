"""Choose and open a backend. Only the chosen backend's heavy imports are loaded (torch stays
unloaded unless the torch backend is chosen)."""

from __future__ import annotations

from pathlib import Path

from ..errors import DerainError
from .backend import Backend

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch", "triton")


def open_backend(kind: str = "auto", engine: Path | None = None, onnx: Path | None = None,
                 checkpoint: Path | None = None, device: str = "cpu", memory: str = "auto",
                 cuda_graph: bool = False, url: str | None = None, model: str = "derain") -> Backend:
    """auto: the TensorRT engine if given, else the ONNX model (ONNX Runtime), else a Triton server
    at `url`, else torch."""
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
