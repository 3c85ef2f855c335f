"""Does the ONNX graph compute what the PyTorch model does? Polygraphy's Comparator on ONNX Runtime."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..model import DerainNet
from .comparison import output_stats, quiet_polygraphy, simple_compare
from .names import INPUT_NAME, OUTPUT_NAME

# FP32 vs FP32, judged on the median error (the max is reported). Kernels differ in summation order
# by ~1e-7, which is enough to flip a pixel whose two nearest NAB centroids tie that closely (seen:
# 0.99736041 vs 0.99736035 on a real image). The flip moves the chunk boundaries of every later
# token in between, so such inputs show max errors of ~0.04 while the median stays ~1e-4; a wrong
# export moves the median by 1e-2 and more.
ATOL, RTOL = 1e-3, 1e-3
ERROR_STAT = "median"


def _torch_runner(model: DerainNet, shape: tuple[int, ...]):  # noqa: ANN202 - polygraphy is imported lazily
    from polygraphy.backend.base import BaseRunner
    from polygraphy.common import TensorMetadata

    class TorchCpuRunner(BaseRunner):
        """Polygraphy's PytRunner moves inputs to CUDA; this one runs where the model is."""

        def __init__(self) -> None:
            super().__init__(name="pytorch")

        def get_input_metadata_impl(self) -> TensorMetadata:
            return TensorMetadata().add(INPUT_NAME, np.float32, shape)

        def infer_impl(self, feed_dict: dict) -> OrderedDict:
            started = time.perf_counter()
            with torch.no_grad(), model.export_mode():
                output = model(torch.from_numpy(feed_dict[INPUT_NAME]))
            self.inference_time = time.perf_counter() - started
            return OrderedDict([(OUTPUT_NAME, output.numpy())])

    return TorchCpuRunner()


@dataclass
class Parity:
    passed: bool
    atol: float
    rtol: float
    max_abs: float
    median_abs: float
    mean_abs: float

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (f"{verdict}: ONNX Runtime vs PyTorch max |err| {self.max_abs:.3g}, median {self.median_abs:.3g} "
                f"(median within atol {self.atol:g}, rtol {self.rtol:g})")


def parity_inputs(batch: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """Uniform noise and a rainy scene (streaks over smooth gradients): structured images are where
    near-tied NAB clusters show up, noise is where every kernel is exercised."""
    from ..data.synthetic import add_rain

    rng = np.random.default_rng(seed)
    noise = rng.random((batch, 3, height, width), dtype=np.float32)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    scene = np.stack([0.3 + 0.4 * x, 0.2 + 0.5 * y, 0.6 - 0.3 * x * y], axis=-1).astype(np.float32)
    rainy = np.stack([add_rain(scene, rng).transpose(2, 0, 1) for _ in range(batch)])
    return [noise, np.ascontiguousarray(rainy, dtype=np.float32)]


def check_parity(model: DerainNet, onnx_path: str | Path, inputs: list[np.ndarray], atol: float = ATOL,
                 rtol: float = RTOL) -> Parity:
    """Run `inputs` through PyTorch and ONNX Runtime (CPU) with Polygraphy and compare."""
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator

    onnx_runner = OnnxrtRunner(SessionFromOnnx(str(onnx_path), providers=["CPUExecutionProvider"]), name="onnxrt")
    with quiet_polygraphy():
        results = Comparator.run([_torch_runner(model, inputs[0].shape), onnx_runner],
                                 data_loader=[{INPUT_NAME: x} for x in inputs])
        accuracy = Comparator.compare_accuracy(
            results, compare_func=simple_compare(atol=atol, rtol=rtol, check_error_stat=ERROR_STAT))
    stats = output_stats(accuracy, OUTPUT_NAME)
    return Parity(
        passed=bool(accuracy),
        atol=atol,
        rtol=rtol,
        max_abs=float(max(s.max_absdiff for s in stats)),
        median_abs=float(np.median([s.median_absdiff for s in stats])),
        mean_abs=float(np.mean([s.mean_absdiff for s in stats])),
    )
