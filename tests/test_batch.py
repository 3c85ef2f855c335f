"""Batch beyond 1: the counting sort and the NAB work per image, and a dynamic-batch ONNX (FP32,
FP16, INT8) gives each image of a batch exactly what it gives that image alone."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from derain.calib.frames import sample_frames
from derain.calib.quantize import quantize_onnx
from derain.engines.build import profile_shapes, trtexec_command, BuildOptions
from derain.export.fp16 import convert_to_fp16
from derain.export.lint import lint_model
from derain.export.manifest import batch_range, read_manifest
from derain.export.onnx_export import export_onnx
from derain.export.parity import check_parity, parity_inputs
from derain.model import build_model
from derain.model.sorting import positions_argsort, positions_counting
from derain.runtime.onnxruntime_backend import OnnxRuntimeBackend

HEIGHT, WIDTH, MOST = 48, 64, 3


@pytest.fixture(scope="module")
def dynamic_models(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("dynamic")
    model = build_model("tiny")
    fp32 = export_onnx(model, folder / "tiny.onnx", HEIGHT, WIDTH, MOST, dynamic_batch=True)
    calib = sample_frames(Path(__file__).parent.parent / "examples", 4, HEIGHT, WIDTH)
    return model, {"fp32": fp32, "fp16": convert_to_fp16(fp32, folder / "tiny.fp16.onnx"),
                   "int8": quantize_onnx(fp32, calib, folder / "tiny.int8.onnx")}


def test_counting_sort_of_a_batch_is_each_image_sorted_alone():
    keys = torch.randint(0, 16, (4, 3000), generator=torch.Generator().manual_seed(1))
    batched = positions_counting(keys, 16)
    assert torch.equal(batched, torch.cat([positions_counting(k[None], 16) for k in keys]))
    assert torch.equal(batched, positions_argsort(keys))


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_a_dynamic_batch_equals_single_runs_exactly(dynamic_models, precision):
    _, paths = dynamic_models
    manifest = read_manifest(paths[precision])
    assert manifest.input["shape"] == [-1, 3, HEIGHT, WIDTH] and batch_range(manifest.input) == (1, MOST)
    images = np.stack(parity_inputs(MOST, HEIGHT, WIDTH)[0])
    with OnnxRuntimeBackend(paths[precision]) as backend:
        assert backend.dynamic_batch and backend.input_shape == (MOST, 3, HEIGHT, WIDTH)
        batched = backend.run(images)
        singles = np.concatenate([backend.run(images[i : i + 1]) for i in range(MOST)])
        pair = backend.run(images[:2])
    np.testing.assert_array_equal(batched, singles)
    np.testing.assert_array_equal(pair, batched[:2])


def test_dynamic_batch_passes_parity_and_lint_and_builds_a_profile(dynamic_models):
    model, paths = dynamic_models
    parity = check_parity(model, paths["fp32"], parity_inputs(MOST, HEIGHT, WIDTH))
    assert parity.passed, parity.summary()
    findings = lint_model(onnx.load(str(paths["fp32"])))
    assert [f for f in findings if f.level != "info"] == []
    assert any(f.rule == "dynamic-batch" for f in findings)
    description = read_manifest(paths["fp16"]).input
    shapes = profile_shapes(description)
    assert shapes == {"min": (1, 3, HEIGHT, WIDTH), "opt": (MOST, 3, HEIGHT, WIDTH), "max": (MOST, 3, HEIGHT, WIDTH)}
    line = trtexec_command(paths["fp16"], Path("e.engine"), BuildOptions(), Path("cache"), description)
    assert f"--minShapes=rainy:1x3x{HEIGHT}x{WIDTH}" in line and f"--maxShapes=rainy:{MOST}x3x{HEIGHT}x{WIDTH}" in line


def test_a_static_batch_is_filled_and_gives_each_frame_what_batch_one_gives(tmp_path):
    """Frames of the engine's size go through `infer` together; a static batch of 3 is padded."""
    torch.manual_seed(0)
    model = build_model("tiny")
    single = export_onnx(model, tmp_path / "one.onnx", HEIGHT, WIDTH)
    triple = export_onnx(model, tmp_path / "three.onnx", HEIGHT, WIDTH, MOST)
    frames = [np.random.default_rng(i).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for i in range(4)]
    with OnnxRuntimeBackend(single) as one, OnnxRuntimeBackend(triple) as three:
        assert not three.dynamic_batch
        expected = one.infer(frames)
        for got, want in zip(three.infer(frames), expected):  # a batch of 3, then 1 padded to 3
            np.testing.assert_array_equal(got, want)
