"""What pip installs: a core that shadows nothing of JetPack's, extras for desktops and Jetsons,
and the JetPack 6 dependency set as pip's resolver sees it for Python 3.10 on aarch64."""

import json
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).parent.parent / "pyproject.toml"


def _extras() -> dict[str, list[str]]:
    """extra -> requirements, from the installed package's metadata (Requires-Dist)."""
    extras: dict[str, list[str]] = {}
    for line in requires("derain") or []:
        requirement, _, marker = line.partition(";")
        name = marker.split("==")[-1].strip().strip("'\"") if "extra" in marker else ""
        extras.setdefault(name, []).append(requirement.strip())
    return extras


def test_core_needs_neither_torch_nor_pypi_opencv():
    core = " ".join(_extras()[""]).lower()
    assert "torch" not in core and "opencv" not in core and "numpy" in core


def test_tensorrt_extra_names_tensorrt_10_and_cuda_python_12():
    tensorrt = _extras()["tensorrt"]
    assert any(r.startswith("tensorrt-cu12") and "<11" in r for r in tensorrt)
    assert any(r.startswith("cuda-python") and "<13" in r and ">=12.6.1" in r for r in tensorrt)


def test_jetpack6_dependency_set_resolves_with_the_pins_for_python310_aarch64(tmp_path):
    """pip's own resolver, as on a Jetson (cp310, manylinux aarch64), dry run: nothing installed."""
    requirements = [r for r in _extras()[""] + _extras()["jetson"] if not r.startswith("derain")]
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--target", str(tmp_path / "target"), "--python-version", "3.10",
               "--platform", "manylinux2014_aarch64", "--only-binary=:all:", "--report", str(tmp_path / "r.json"),
               *requirements]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and any(word in result.stderr for word in ("connection", "Network", "resolve host")):
        pytest.skip(f"no package index reachable: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr
    versions = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
                for item in json.loads((tmp_path / "r.json").read_text())["install"]}
    assert versions["numpy"].split(".")[0] == "1"  # JetPack's cv2 is built against NumPy 1.x
    major, minor, patch = (int(x) for x in versions["cuda-python"].split(".")[:3])
    assert (major, minor) == (12, 6) and patch >= 1  # JetPack 6.1/6.2's CUDA 12.6; cuda.bindings exists
    assert versions.get("cuda-bindings", "12.6").startswith("12.6")  # no newer runtime linked in
    assert not [name for name in versions if "cu13" in name or name.startswith("nvidia-")]  # no CUDA 13 wheel
    assert not {"torch", "opencv-python", "tensorrt", "tensorrt-cu12", "tensorrt-cu13"} & set(versions)


def test_nothing_that_ships_points_outside_the_clone():
    """A user's clone has only itself: no code, doc, script, benchmark or checkpoint (binary ones
    included) names the developers' data or notes beside the checkout."""
    root = Path(__file__).resolve().parents[1]
    tracked = subprocess.run(["git", "ls-files", "derain", "docs", "scripts", "benchmarks", "README.md", "pyproject.toml"],
                             cwd=root, capture_output=True, text=True, check=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    pointing = [name for name in tracked if (root / name).is_file() and b"../shared" in (root / name).read_bytes()]
    assert pointing == []


def test_the_files_a_wheel_needs_beside_the_modules_are_package_data():
    """The bundled checkpoint, the reference pairs and the GStreamer element (a .py the plugin
    loader imports from a folder that is not a Python package) go into a wheel only as package data."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["derain"]
    needed = [path.relative_to(root / "derain").as_posix() for path in (
        root / "derain" / "checkpoints" / "realtime.pt", root / "derain" / "gstreamer" / "plugins" / "python" / "gstderain.py",
        *sorted((root / "derain" / "calib" / "reference").glob("*/*/*.png")))]
    assert [name for name in needed if not any(fnmatch.fnmatch(name, pattern) for pattern in patterns)] == []
