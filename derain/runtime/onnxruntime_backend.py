"""ONNX Runtime backend: CPU everywhere; CUDA or TensorRT execution providers where installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DerainError
from ..export.manifest import batch_range, read_manifest
from .backend import Backend

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        providers = providers or [p for p in PREFERRED_PROVIDERS if p in available]
        missing = [p for p in providers if p not in available]
        if missing:
            raise DerainError(f"{path}: ONNX Runtime here has no {', '.join(missing)} "
                              f"(available: {', '.join(available)})")
        try:
            options = ort.SessionOptions()
            options.log_severity_level = 3  # errors only: FP16 graphs log a constant-folding warning per FP16 Mul on CPU
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # ONNX Runtime raises its own Fail / InvalidGraph / NoSuchFile types
            raise DerainError(f"{path}: ONNX Runtime cannot load it ({str(error).splitlines()[0]})") from error
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        shape = model_input.shape
        if not all(isinstance(d, int) for d in shape[1:]):  # the NAB counting sort is sized by H and W
            raise DerainError(f"{path}: dynamic input shape {shape}; export a static one with `derain export`")
        if not isinstance(shape[0], int):  # export --dynamic-batch: its manifest says how large
            manifest = read_manifest(path)
            self.dynamic_batch = True
            shape = [batch_range(manifest.input)[1] if manifest else 1, *shape[1:]]
        self.input_shape = tuple(shape)
        self.providers = self.session.get_providers()

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch.astype(np.float32, copy=False)})[0]
