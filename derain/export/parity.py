"""Does the ONNX graph compute what the PyTorch model does? Polygraphy's Comparator on ONNX Runtime.

The NAB makes a plain output comparison unsound. Its cluster assignment is an argmax: kernels that
sum in another order (~1e-7) flip a pixel whose two best centroids tie that closely, and the flip
moves the chunk boundaries of every later token of its cluster. At 720p a single flip changes
thousands of outputs, so a correct export can miss any output tolerance, while a loose one would
pass wrong exports. So the check has two parts, each with a tolerance that follows from what it
measures:
1. sort keys: the graph's keys (extra outputs of a copy of the graph) against PyTorch's. A correct
   export disagrees only at near-ties, a few tokens in 10^4 at worst; a wrong one on most tokens.
   KEY_TOLERANCE is the fraction of tokens allowed to disagree.
2. everything else: PyTorch is run again with the graph's own keys, so both sides make the same
   discrete decisions, and the outputs must then agree everywhere within ATOL/RTOL: FP32 kernels
   in another summation order differ by ~1e-6 after the network's ~30 layers; a wrong op by far
   more than 1e-3.
The free-running comparison (PyTorch's own keys) is reported beside, for information.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DerainError
from .graph import key_outputs_model, sort_key_names
from ..model import DerainNet
from .comparison import output_stats, quiet_polygraphy, simple_compare
from .names import INPUT_NAME, OUTPUT_NAME

ATOL, RTOL = 1e-3, 1e-3
KEY_TOLERANCE = 1e-3


@contextmanager
def _keys_of(model: DerainNet, forced: list[np.ndarray] | None, seen: list[np.ndarray]) -> Iterator[None]:
    """Record the sort keys each NAB computes, in call order; with `forced`, use those instead (and
    still record what it computed: with the graph's keys upstream, a difference is a near-tie of
    this block alone, not the cascade of an earlier flip)."""
    modules = model.nonlocal_attentions()
    queue = iter(forced or [])

    def patched(module):  # noqa: ANN001, ANN202
        compute = type(module).sort_keys.__get__(module)

        def sort_keys(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            cluster_ids, keys = compute(tokens)
            seen.append(keys.cpu().numpy())
            if forced is not None:
                keys = torch.from_numpy(next(queue)).to(keys.device)
            return cluster_ids, keys

        return sort_keys

    for module in modules:
        module.sort_keys = patched(module)
    try:
        yield
    finally:
        for module in modules:
            del module.sort_keys


def _torch_runner(model: DerainNet, shape: tuple[int, ...], key_names: list[str], keys_from=None):  # noqa: ANN001, ANN202
    """A Polygraphy runner for the PyTorch model on its own device (Polygraphy's PytRunner moves
    inputs to CUDA). `keys_from(feed)` forces the sort keys; the keys it computed are kept in
    `.computed_keys`, one dict per inference (not outputs: Polygraphy would compare them too)."""
    from polygraphy.backend.base import BaseRunner
    from polygraphy.common import TensorMetadata

    class TorchRunner(BaseRunner):
        def __init__(self) -> None:
            super().__init__(name="pytorch" + ("-with-onnx-keys" if keys_from else ""))
            self.computed_keys: list[dict] = []

        def get_input_metadata_impl(self) -> TensorMetadata:
            return TensorMetadata().add(INPUT_NAME, np.float32, shape)

        def infer_impl(self, feed_dict: dict) -> OrderedDict:
            started = time.perf_counter()
            seen: list[np.ndarray] = []
            with torch.no_grad(), model.export_mode(), _keys_of(model, keys_from(feed_dict) if keys_from else None,
                                                                seen):
                output = model(torch.from_numpy(feed_dict[INPUT_NAME]))
            self.inference_time = time.perf_counter() - started
            self.computed_keys.append(dict(zip(key_names, seen)))
            return OrderedDict([(OUTPUT_NAME, output.numpy())])

    return TorchRunner()


@dataclass
class Parity:
    passed: bool
    atol: float
    rtol: float
    key_mismatch: float  # fraction of NAB tokens whose sort key differs between the runtimes
    max_abs: float  # with the same keys on both sides
    median_abs: float
    free_max_abs: float  # PyTorch with its own keys
    free_median_abs: float

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (f"{verdict}: ONNX Runtime vs PyTorch: sort keys differ at {self.key_mismatch:.2g} of NAB tokens "
                f"(allowed {KEY_TOLERANCE:g}); with the same keys max |err| {self.max_abs:.3g}, median "
                f"{self.median_abs:.3g} (atol {self.atol:g}, rtol {self.rtol:g}); free-running max "
                f"{self.free_max_abs:.3g}, median {self.free_median_abs:.3g}")


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
    """Run `inputs` through PyTorch and ONNX Runtime (CPU) with Polygraphy and compare (see above)."""
    import onnx
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator

    graph = onnx.load(str(onnx_path))
    key_names = sort_key_names(graph)
    if len(key_names) != len(model.nonlocal_attentions()):
        raise DerainError(f"{onnx_path}: found {len(key_names)} NAB sort keys in the graph, the model has "
                          f"{len(model.nonlocal_attentions())} NABs: not an export of this model")
    onnx_runner = OnnxrtRunner(SessionFromOnnx(key_outputs_model(graph, key_names), providers=["CPUExecutionProvider"]),
                               name="onnxrt")
    feeds = [{INPUT_NAME: x} for x in inputs]
    with quiet_polygraphy(), np.errstate(divide="ignore", invalid="ignore"):  # relative errors at zeros
        free = Comparator.run([onnx_runner, _torch_runner(model, inputs[0].shape, key_names)], data_loader=feeds)
        onnx_keys = {id(feed[INPUT_NAME]): [result[name] for name in key_names]
                     for feed, result in zip(feeds, free[0][1])}
        forced_runner = _torch_runner(model, inputs[0].shape, key_names, lambda feed: onnx_keys[id(feed[INPUT_NAME])])
        forced = Comparator.run([onnx_runner, forced_runner], data_loader=feeds)
        compare = simple_compare(atol=atol, rtol=rtol, check_error_stat="max")
        forced_accuracy = Comparator.compare_accuracy(forced, compare_func=compare)
        free_accuracy = Comparator.compare_accuracy(free, compare_func=compare)
    differing = sum(int((ours[name] != theirs[name]).sum())
                    for ours, theirs in zip(forced[0][1], forced_runner.computed_keys) for name in key_names)
    tokens = sum(int(result[name].size) for result in forced[0][1] for name in key_names)
    key_mismatch = differing / tokens if tokens else 0.0
    stats, free_stats = output_stats(forced_accuracy, OUTPUT_NAME), output_stats(free_accuracy, OUTPUT_NAME)
    return Parity(
        passed=bool(forced_accuracy) and key_mismatch <= KEY_TOLERANCE,
        atol=atol,
        rtol=rtol,
        key_mismatch=key_mismatch,
        max_abs=float(max(s.max_absdiff for s in stats)),
        median_abs=float(np.median([s.median_absdiff for s in stats])),
        free_max_abs=float(max(s.max_absdiff for s in free_stats)),
        free_median_abs=float(np.median([s.median_absdiff for s in free_stats])),
    )
