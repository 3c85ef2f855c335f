"""Triton Python-backend model: uint8 BGR frames in, derained uint8 BGR frames out, through derain's
own ONNX Runtime backend on the model.onnx beside this file. `derain triton --python-backend`
copies it into a repository as <repo>/derain/1/model.py; the server's Python must have derain
installed (pip install "derain[onnx]", which brings torch: see NUMPY_2 below)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend

from derain.runtime.onnxruntime_backend import OnnxRuntimeBackend
from derain.triton.repository import FRAMES_IN, FRAMES_OUT


# Triton 2.51's stub (nvidia-pytriton 0.7.0) was built with a pybind11 that predates NumPy 2: under
# NumPy 2 its as_numpy() reads wrong bytes and a pb_utils.Tensor of a NumPy array arrives empty
# (tests/test_triton.py found both). DLPack through torch carries the bytes either way.
NUMPY_2 = int(np.__version__.split(".")[0]) >= 2


def input_array(request, name: str) -> np.ndarray:  # noqa: ANN001 - a pb_utils.InferenceRequest
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if not NUMPY_2:
        return tensor.as_numpy()
    from torch.utils.dlpack import from_dlpack

    return from_dlpack(tensor.to_dlpack()).numpy().copy()


def output_tensor(name: str, array: np.ndarray, keep: list):  # noqa: ANN201 - a pb_utils.Tensor
    """A DLPack tensor only points at its memory: `keep` holds it until the response is sent."""
    if not NUMPY_2:
        return pb_utils.Tensor(name, array)
    import torch

    keep.append(torch.from_numpy(np.ascontiguousarray(array)))
    return pb_utils.Tensor.from_dlpack(name, keep[-1])


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        folder = Path(args["model_repository"]) / args["model_version"]
        self.backend = OnnxRuntimeBackend(folder / "model.onnx", providers=["CPUExecutionProvider"])

    def execute(self, requests: list) -> list:
        """Triton's batcher hands over several requests at once: their frames go through as one
        batch (up to the model's N per inference call), and each request gets its own back."""
        batches = [input_array(request, FRAMES_IN) for request in requests]
        outputs = self.backend.infer([frame for batch in batches for frame in batch])
        self.sent: list = []  # the last responses' memory, alive until the next call (they are sent by then)
        responses, start = [], 0
        for batch in batches:
            derained = np.stack(outputs[start : start + len(batch)])
            start += len(batch)
            responses.append(pb_utils.InferenceResponse([output_tensor(FRAMES_OUT, derained, self.sent)]))
        return responses

    def finalize(self) -> None:
        self.backend.close()
