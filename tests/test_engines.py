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


def test_trtexec_command_reproduces_the_build():
    from derain.engines.build import BuildOptions, trtexec_command

    options = BuildOptions(precision="int8", workspace_mib=1024, optimization_level=4)
    strong = trtexec_command(Path("m.int8.onnx"), Path("e/m.int8.engine"), options, True, Path("t.cache"), {"a"}, None)
    assert strong.split() == ["trtexec", "--onnx=m.int8.onnx", "--saveEngine=e/m.int8.engine",
                              "--memPoolSize=workspace:1024M", "--builderOptimizationLevel=4",
                              "--timingCacheFile=t.cache", "--stronglyTyped"]
    weak = trtexec_command(Path("m.onnx"), Path("m.engine"), options, False, Path("t.cache"), {"/n/Softmax", "/n/ArgMax"},
                           Path("m.calib"))
    assert "--fp16 --int8 --calib=m.calib --precisionConstraints=obey" in weak
    assert weak.endswith("--layerPrecisions=/n/ArgMax:fp32,/n/Softmax:fp32")


def test_deploy_checks_its_inputs_and_the_device_before_any_work(tmp_path):
    from conftest import run_derain

    result = run_derain("deploy", "--height", "64", "--width", "64", "--precision", "int8",
                        "--onnx-dir", tmp_path / "onnx")
    assert result.returncode == 1 and "needs --calib" in result.stderr
    result = run_derain("deploy", "--height", "64", "--width", "64", "--precision", "int8", "--calib",
                        tmp_path / "nothing", "--onnx-dir", tmp_path / "onnx")
    assert result.returncode == 1 and "no such calibration source" in result.stderr
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here: deploy would build")
    except ImportError:
        pass
    result = run_derain("deploy", "--height", "64", "--width", "64", "--onnx-dir", tmp_path / "onnx")
    assert result.returncode == 1 and "TensorRT is not installed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "onnx").exists()  # nothing exported
