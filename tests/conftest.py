import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from derain.model import build_model, save_checkpoint


@pytest.fixture(scope="session", autouse=True)
def gstreamer_registry(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A GStreamer registry of this test run's own (the RTSP and element tests, and what they start):
    a plugin that failed to load is remembered in ~/.cache/gstreamer-1.0 and never tried again."""
    os.environ["GST_REGISTRY"] = str(tmp_path_factory.mktemp("gstreamer") / "registry.bin")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained `tiny` checkpoint: fast, and enough to exercise the command line."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(build_model("tiny"), path, {"note": "untrained, for tests"})
    return path


def run_derain(*args: str) -> subprocess.CompletedProcess:
    """The real command line, in a subprocess: exit codes and stderr as a user sees them."""
    return subprocess.run([sys.executable, "-m", "derain", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


# The project's data (../shared/data beside the checkout, as on CI); tests that need it skip without it.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not here (the project's shared data)")
    return path
