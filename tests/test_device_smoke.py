"""scripts/device-smoke.sh runs here up to its TensorRT check: on a fresh machine (no data folder,
no scikit-image) it makes every ONNX file, lints it, names the evaluation pairs it will use, then
stops with one line; with ONNX made elsewhere it needs no PyTorch; a missing package is one line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from derain.calib.ranges import reference_groups

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "scripts" / "device-smoke.sh"
PRECISIONS = ("fp32", "fp16", "fp16 (FP32 norm)", "int8")


@pytest.fixture(autouse=True)
def no_tensorrt():
    try:
        import tensorrt  # noqa: F401

        if hasattr(tensorrt, "__version__"):
            pytest.skip("TensorRT is installed here: the script would go on to build engines")
    except ImportError:
        pass


def smoke(*args: str, hidden: tuple[str, ...] = (), tmp_path: Path) -> subprocess.CompletedProcess:
    """The script, with `hidden` packages made unimportable (as on a machine without them)."""
    shadow = tmp_path / "hidden"
    for name in hidden:
        (shadow / name).mkdir(parents=True, exist_ok=True)
        (shadow / name / "__init__.py").write_text(f"raise ModuleNotFoundError(\"No module named '{name}'\", name={name!r})\n")
    env = {**os.environ, "PYTHONPATH": str(shadow)}
    env.pop("DERAIN_DATA", None)
    return subprocess.run(["bash", str(SCRIPT), "--size", "128x64", *args], capture_output=True, text=True,
                          timeout=900, env=env)


def assert_stops_at_tensorrt(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("derain: error: TensorRT is not installed")
    lines = result.stdout.splitlines()
    for precision in PRECISIONS:
        assert f"lint {precision}: 0 errors, 0 sequential loop steps on TensorRT 10.3" in lines


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """The script on a fresh machine: an empty data folder, no scikit-image. Its ONNX files (in the
    returned work folder) are what the other tests take as made elsewhere."""
    tmp_path = tmp_path_factory.mktemp("fresh")
    empty = tmp_path / "data"
    empty.mkdir()
    work = tmp_path / "work"
    return smoke("--data", str(empty), "--work", str(work), hidden=("skimage",), tmp_path=tmp_path), work


def test_a_fresh_machine_prepares_everything_then_stops_at_tensorrt(fresh_run):
    result, work = fresh_run
    assert_stops_at_tensorrt(result)
    assert all((work / f"realtime{suffix}.onnx").is_file() for suffix in ("", ".fp16", ".fp16-fp32-normalization", ".int8"))
    # The pairs it will evaluate on, named before TensorRT: the shipped train-split crops, every one.
    named = next(line for line in result.stdout.splitlines() if line.startswith("evaluation: "))
    files = [path.name for folder in reference_groups().values() for path in (folder / "rain").iterdir()]
    assert f"evaluation: {len(files)} reference pairs that ship with derain" in named
    assert all(name in named for name in files)
    assert len(list((work / "stream-frames").glob("*.jpg"))) == 60


def test_onnx_made_elsewhere_needs_no_pytorch(fresh_run, tmp_path):
    _, made = fresh_run
    result = smoke("--onnx-dir", str(made), "--work", str(tmp_path / "jetson"), hidden=("torch", "onnxsim"),
                   tmp_path=tmp_path)
    assert_stops_at_tensorrt(result)
    wrong = smoke("--size", "128x96", "--onnx-dir", str(made), hidden=("torch",), tmp_path=tmp_path)
    assert wrong.stderr.strip() == f"derain: error: {made / 'realtime.onnx'}: made for 128x64, not --size 128x96"
    empty = tmp_path / "empty-onnx"
    empty.mkdir()
    for name in ("realtime.onnx", "realtime.fp16.onnx", "realtime.fp16-fp32-normalization.onnx", "realtime.int8.onnx"):
        (empty / name).write_bytes((made / name).read_bytes() if name != "realtime.fp16.onnx" else b"x\n")
    broken = smoke("--onnx-dir", str(empty), hidden=("torch",), tmp_path=tmp_path)
    assert broken.stderr.strip() == f"derain: error: {empty / 'realtime.fp16.onnx'}: not an ONNX model (no graph in it)"
    assert smoke("--size", "1280x", tmp_path=tmp_path).stderr.strip() == (
        "derain: error: --size 1280x: expected one WIDTHxHEIGHT, e.g. 1280x720")


def test_a_missing_package_is_one_line(tmp_path):
    result = smoke("--work", str(tmp_path / "work"), hidden=("onnx",), tmp_path=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == ("derain: error: No module named 'onnx' "
                                     "(docs/deploy.md says what to install on this machine)")


def test_the_power_mode_is_read_where_nvpmodel_answers(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import device_smoke
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert device_smoke.power_and_clocks() == "power mode and clocks: neither nvpmodel nor nvidia-smi answered"
    nvpmodel = tmp_path / "nvpmodel"
    nvpmodel.write_text("#!/bin/sh\necho 'NV Power Mode: MAXN'\necho 0\n")
    nvpmodel.chmod(0o755)
    assert device_smoke.power_and_clocks() == "nvpmodel: NV Power Mode: MAXN | 0"
