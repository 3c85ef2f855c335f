"""PyTorch -> ONNX for TensorRT: static shapes, opset 20 (names.OPSET), the model's export mode, onnxsim, checker."""

from __future__ import annotations

import ctypes
import warnings
from pathlib import Path

import torch

from ..atomic import atomic_path
from ..errors import DerainError
from ..model import DerainNet
from .manifest import describe, write_manifest
from .names import INPUT_NAME, OPSET, OUTPUT_NAME, SIMPLIFY_OPTIONS


SIMPLIFY_PASSES = 3
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def _return_freed_memory() -> None:
    """Tracing allocates and frees many feature-map-sized blocks. Once glibc's dynamic mmap
    threshold has grown, it serves them from its heap, which fragments: tracing `edge` at 720p
    peaked at 3.4 GB of resident memory, 1.7 GB with a fixed 1 MB threshold, under which every large
    block is mapped on its own and goes back to the system when freed."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to tune
        return
    libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)


def export_onnx(model: DerainNet, path: str | Path, height: int, width: int, batch: int = 1,
                checkpoint_sha256: str | None = None, dynamic_batch: bool = False) -> Path:
    """Export `model` at one static input shape, simplify it and check it; written atomically with
    its manifest (export/manifest.py) beside it. With `dynamic_batch` the batch dimension takes
    1..`batch` images (a TensorRT optimization profile, Triton's dynamic batcher); height and width
    stay static, and so does everything the NAB's counting sort builds from them."""
    import onnx
    import onnxsim

    if min(height, width, batch) < 1:
        raise DerainError(f"{path}: export shape must be positive, got batch={batch} {height}x{width}")
    _return_freed_memory()
    example = torch.rand(batch, 3, height, width)
    with atomic_path(path) as tmp, model.export_mode(), torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter, which writes GELU as one Gelu op at opset 20.
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(tmp), opset_version=OPSET, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamo=False, do_constant_folding=False,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None)
        # Constants are folded only up to 1 MB (names.SIMPLIFY_OPTIONS): a larger one (the shifted
        # windows' region masks, ~83 MB for edge at 720p) stays the few small ops that make it, and
        # the engine builder folds it on the device instead of the file carrying it.
        simplified = onnx.load(str(tmp))
        for _ in range(SIMPLIFY_PASSES):  # a pass can fold what the one before left of unknown shape
            nodes = len(simplified.graph.node)
            simplified, ok = onnxsim.simplify(simplified, **SIMPLIFY_OPTIONS)
            if not ok:
                raise DerainError(f"{path}: onnxsim's simplified graph does not match the exported one")
            if len(simplified.graph.node) == nodes:
                break
        onnx.checker.check_model(simplified, full_check=True)
        onnx.save(simplified, str(tmp))
        manifest = describe(simplified, "fp32", model.config.name, checkpoint_sha256, max_batch=batch)
    write_manifest(path, manifest)
    return Path(path)
