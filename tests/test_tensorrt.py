"""TensorRT engines of `tiny`: built, run, and compared with ONNX Runtime by Polygraphy.
Runs only where TensorRT and an NVIDIA GPU are present; skipped cleanly elsewhere."""

import numpy as np
import pytest
import torch

trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed here")
if not hasattr(trt, "Builder"):
    pytest.skip("only TensorRT type stubs are installed here", allow_module_level=True)
pytest.importorskip("onnxruntime", reason="needs the `onnx` extra")

from derain.calib.quantize import quantize_onnx  # noqa: E402
from derain.engines.build import BuildOptions, build_engine  # noqa: E402
from derain.engines.device import current_device  # noqa: E402
from derain.errors import DerainError  # noqa: E402
from derain.export.fp16 import convert_to_fp16  # noqa: E402
from derain.export.onnx_export import INPUT_NAME, export_onnx  # noqa: E402
from derain.export.comparison import quiet_polygraphy, simple_compare  # noqa: E402
from derain.model import build_model  # noqa: E402
from derain.runtime.tensorrt_backend import TensorRTBackend  # noqa: E402

pytestmark = pytest.mark.tensorrt


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    try:
        current_device()
    except DerainError as error:
        pytest.skip(f"no usable GPU: {error}")
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("trt")
    fp32 = export_onnx(build_model("tiny"), folder / "tiny.onnx", 64, 64)
    calib = np.random.default_rng(0).random((8, 3, 64, 64), dtype=np.float32)
    return {"fp32": fp32, "fp16": convert_to_fp16(fp32, folder / "tiny.fp16.onnx"),
            "int8": quantize_onnx(fp32, calib, folder / "tiny.int8.onnx"), "store": folder / "engines"}


@pytest.mark.parametrize("precision,atol", [("fp16", 0.05), ("int8", 0.25)])
def test_engine_builds_runs_and_matches_onnxruntime(onnx_models, precision, atol):
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator

    from derain.validate.report import backend_runner

    engine = build_engine(onnx_models[precision], BuildOptions(precision=precision, store=onnx_models["store"],
                                                               name=f"tiny-{precision}"))
    assert engine.is_file() and engine.with_suffix(".json").is_file()
    feeds = [{INPUT_NAME: np.random.default_rng(i).random((1, 3, 64, 64), dtype=np.float32)} for i in range(2)]
    with quiet_polygraphy():
        results = Comparator.run([OnnxrtRunner(SessionFromOnnx(str(onnx_models["fp32"]))),
                                  backend_runner(lambda: TensorRTBackend(engine), "derain-tensorrt")],
                                 data_loader=feeds)
        accuracy = Comparator.compare_accuracy(results, compare_func=simple_compare(atol=atol,
                                                                                        check_error_stat="median"))
    assert accuracy, f"{precision} engine (the shipped TensorRTBackend) differs from ONNX Runtime beyond {atol}"

    backend = TensorRTBackend(engine)
    try:
        frame = np.random.default_rng(0).integers(0, 256, (100, 150, 3), dtype=np.uint8)
        output = backend.infer([frame])[0]
        assert output.shape == frame.shape and output.dtype == np.uint8
        assert np.isfinite(backend.run(feeds[0][INPUT_NAME])).all()
    finally:
        backend.close()
