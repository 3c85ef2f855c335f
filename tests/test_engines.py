"""The TensorRT layer's decisions that run without TensorRT: which precision a graph can give, the
calibration cache's name, which GPU library is used, and the engine store's version check."""

from pathlib import Path

import pytest

from derain.engines.build import calibration_cache_path, check_precision
from derain.engines.device import DeviceInfo, _gpu_name_and_capability
from derain.errors import DerainError

ONNX = Path("model.onnx")


@pytest.mark.parametrize("precision,qdq,fp16,major,calib,error", [
    ("int8", True, False, 10, None, None),
    ("int8", True, False, 11, None, None),
    ("fp16", True, False, 10, None, "builds only --precision int8"),  # would be an INT8 engine named fp16
    ("fp32", True, False, 10, None, "builds only --precision int8"),
    ("fp16", False, True, 11, None, None),
    ("int8", False, True, 10, Path("c.npz"), "builds only --precision fp16"),
    ("fp32", False, False, 11, None, None),
    ("fp16", False, False, 10, None, None),  # TensorRT 10: builder flags
    ("fp16", False, False, 11, None, "only from a FP16"),
    ("int8", False, False, 10, None, "needs --calib"),
    ("int8", False, False, 10, Path("c.npz"), None),
    ("int8", False, False, 11, Path("c.npz"), "only from a Q/DQ"),
])
def test_a_precision_the_graph_cannot_give_is_refused(precision, qdq, fp16, major, calib, error):
    if error is None:
        check_precision(precision, qdq, fp16, major, calib, ONNX)
    else:
        with pytest.raises(DerainError, match=error):
            check_precision(precision, qdq, fp16, major, calib, ONNX)


def test_calibration_cache_changes_with_the_frames_and_the_onnx(tmp_path):
    onnx, calib = tmp_path / "m.onnx", tmp_path / "calib.npz"
    onnx.write_bytes(b"graph")
    calib.write_bytes(b"frames")
    target = tmp_path / "engines" / "m.int8.engine"
    first = calibration_cache_path(target, onnx, calib)
    calib.write_bytes(b"other frames")
    second = calibration_cache_path(target, onnx, calib)
    onnx.write_bytes(b"another graph")
    third = calibration_cache_path(target, onnx, calib)
    assert len({first, second, third}) == 3 and all(p.suffix == ".calib" for p in (first, second, third))


def test_engines_are_tied_to_the_exact_tensorrt_release():
    built = DeviceInfo(gpu="Orin", compute_capability="8.7", tensorrt="10.3.0")
    assert built.slug == "orin-sm87-trt10.3.0"
    assert built.mismatch(DeviceInfo("Orin", "8.7", "10.3.0")) is None
    assert "TensorRT 10.3.0, this is TensorRT 10.3.1" in DeviceInfo("Orin", "8.7", "10.3.1").mismatch(built)


def test_without_a_gpu_library_the_error_names_both_and_the_extras():
    pytest.importorskip("pytest")  # the libraries below are absent on CI machines
    try:
        import cuda.bindings  # noqa: F401
        pytest.skip("cuda-python is installed here")
    except ImportError:
        pass
    with pytest.raises(DerainError) as error:
        _gpu_name_and_capability()
    message = str(error.value)
    assert "cuda-python is not installed" in message and "pycuda" in message and "derain[jetson]" in message
