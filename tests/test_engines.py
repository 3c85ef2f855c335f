"""The TensorRT layer's decisions that run without TensorRT: which precision a graph can give, the
calibration cache's name, which GPU library is used, and the engine store's version check."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_derain

from derain.engines.build import check_precision
from derain.engines.device import DeviceInfo, _gpu_facts, require_tensorrt_10
from derain.engines.store import Manifest, check_engine, manifest_path
from derain.errors import DerainError

ONNX = Path("model.onnx")


@pytest.mark.parametrize("precision,carried,error", [
    ("int8", "int8", None),
    ("fp16", "int8", "builds only --precision int8"),  # would be an INT8 engine named fp16
    ("fp32", "int8", "builds only --precision int8"),
    ("fp16", "fp16", None),
    ("int8", "fp16", "quantize it first: derain calib"),
    ("fp32", "fp16", "builds only --precision fp16"),
    ("fp32", "fp32", None),
    ("fp16", "fp32", None),  # converted to the FP16 ONNX first
    ("int8", "fp32", "derain quantize model.onnx --calib calib.npz -o model.int8.onnx"),
])
def test_a_precision_the_graph_cannot_give_is_refused(precision, carried, error):
    if error is None:
        check_precision(precision, carried, ONNX)
    else:
        with pytest.raises(DerainError, match=error):
            check_precision(precision, carried, ONNX)


def test_every_build_is_strongly_typed_with_no_precision_flags_or_pins():
    """The builder's source holds no weakly typed road: no FP16/INT8/precision-constraint flags, no
    layer pinning, no implicit calibrator, on TensorRT 10 or 11 (the build itself needs a GPU)."""
    import inspect

    from derain.engines import build

    source = inspect.getsource(build.build_engine)
    assert "strongly_typed=True" in source
    for weak in ("fp16=", "int8=", "precision_constraints", "Calibrator", "set_output_type", ".precision ="):
        assert weak not in source
    assert build.BuildOptions().tf32 is build.TF32_DEFAULT is False


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
        _gpu_facts()
    message = str(error.value)
    assert "cuda-python is not installed" in message and "pycuda" in message and "derain[jetson]" in message


def test_trtexec_command_reproduces_the_build():
    from derain.engines.build import BuildOptions, trtexec_command

    options = BuildOptions(precision="int8", workspace_mib=1024, optimization_level=4)
    line = trtexec_command(Path("m.int8.onnx"), Path("e/m.int8.engine"), options, Path("t.cache"))
    assert line.split() == ["trtexec", "--onnx=m.int8.onnx", "--saveEngine=e/m.int8.engine",
                            "--memPoolSize=workspace:1024M", "--builderOptimizationLevel=4",
                            "--timingCacheFile=t.cache", "--stronglyTyped", "--noTF32"]
    options.tf32 = True
    assert "--noTF32" not in trtexec_command(Path("m.onnx"), Path("m.engine"), options, Path("t.cache"))


def test_deploy_checks_its_inputs_first_and_writes_the_onnx_where_tensorrt_is_absent(tmp_path, tiny_checkpoint):
    from conftest import run_derain

    result = run_derain("deploy", "--height", "64", "--width", "64", "--precision", "int8", "--calib-only",
                        "--onnx-dir", tmp_path / "onnx")
    assert result.returncode == 1 and "--calib-only needs --calib" in result.stderr
    result = run_derain("deploy", "--height", "64", "--width", "64", "--precision", "int8", "--calib",
                        tmp_path / "nothing", "--onnx-dir", tmp_path / "onnx")
    assert result.returncode == 1 and "no such calibration source" in result.stderr
    assert not (tmp_path / "onnx").exists()  # nothing exported before the inputs are known to be good
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here: deploy would build")
    except ImportError:
        pass
    result = run_derain("deploy", "--checkpoint", tiny_checkpoint, "--height", "48", "--width", "64",
                        "--onnx-dir", tmp_path / "onnx")
    errors = [line for line in result.stderr.splitlines() if line.startswith("derain: error:")]
    assert result.returncode == 1 and len(errors) == 1 and "TensorRT is not installed" in errors[0]
    assert "Traceback" not in result.stderr
    assert (tmp_path / "onnx" / "tiny-64x48.fp16.onnx").is_file()  # ready to build where TensorRT is


def test_the_fingerprint_tells_orin_modules_apart():
    """Every Orin module is "Orin", sm 8.7: an engine built on an AGX Orin must not pass on an Orin NX."""
    agx = DeviceInfo("Orin", "8.7", "10.3.0", multiprocessors=16, memory_gib=61)
    orin_nx = DeviceInfo("Orin", "8.7", "10.3.0", multiprocessors=8, memory_gib=15)
    assert agx.slug == "orin-sm87-16sms-61gib-trt10.3.0" != orin_nx.slug
    assert "Orin (sm 8.7, 16 SMs, 61 GiB), this is Orin (sm 8.7, 8 SMs, 15 GiB)" in orin_nx.mismatch(agx)
    assert orin_nx.mismatch(DeviceInfo("Orin", "8.7", "10.3.0", 8, 15)) is None


@pytest.mark.parametrize("version", ["10.3.0.30", "10.13.0.35", "11.0.0"])
def test_tensorrt_10_and_newer_are_taken(version):
    require_tensorrt_10(version)


def test_jetpack_6_0s_tensorrt_8_6_is_one_clear_line():
    with pytest.raises(DerainError) as error:
        require_tensorrt_10("8.6.2.3")
    assert str(error.value).startswith("TensorRT 8.6.2.3 is installed here; derain needs TensorRT 10.3 or newer")
    assert "JetPack 6.1 or 6.2" in str(error.value) and "\n" not in str(error.value)


def _plan_built_on(tmp_path: Path, device: DeviceInfo) -> Path:
    """An engine file with the manifest `derain build` writes beside it (the plan's bytes are never
    read before the check)."""
    engine = tmp_path / "realtime.fp16.engine"
    engine.write_bytes(b"plan")
    manifest = Manifest("realtime", "fp16", device, {"name": "image", "shape": [1, 3, 720, 1280]}, "0" * 64, {}, 1.0, "now")
    manifest_path(engine).write_text(json.dumps(manifest.to_dict()))
    return engine


def test_a_plan_from_another_gpu_or_tensorrt_is_refused_naming_both(tmp_path):
    """Review 3 / issue 32 item 4: the manifest is checked before TensorRT deserializes anything."""
    orin = DeviceInfo("Orin", "8.7", "10.3.0", 8, 16)
    engine = _plan_built_on(tmp_path, orin)
    assert check_engine(engine, orin).device == orin
    with pytest.raises(DerainError) as error:
        check_engine(engine, DeviceInfo("NVIDIA H100 80GB HBM3", "9.0", "10.3.0", 132, 79))
    assert str(error.value) == (f"{engine}: built for GPU Orin (sm 8.7, 8 SMs, 16 GiB), this is NVIDIA H100 80GB HBM3 "
                                "(sm 9.0, 132 SMs, 79 GiB); rebuild it here with `derain build`")
    with pytest.raises(DerainError, match="built for TensorRT 10.3.0, this is TensorRT 10.13.0"):
        check_engine(engine, DeviceInfo("Orin", "8.7", "10.13.0", 8, 16))


def test_derain_run_on_a_plan_it_cannot_check_here_says_what_the_plan_needs(tmp_path):
    engine = _plan_built_on(tmp_path, DeviceInfo("Orin", "8.7", "10.3.0", 8, 16))
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    result = run_derain("run", image, "-o", tmp_path / "out.png", "--engine", engine)
    assert result.returncode == 1 and not (tmp_path / "out.png").exists()
    assert result.stderr.strip().splitlines() == [
        f"derain: error: {engine}: built for Orin (sm 8.7, TensorRT 10.3.0), but TensorRT is not installed here "
        "(JetPack ships it; on a desktop pip install 'derain[tensorrt]')"]
