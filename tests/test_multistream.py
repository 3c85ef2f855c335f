"""Several streams on one device: frames of three videos batched into one ONNX Runtime call each,
every output frame equal to what a single-stream run of that video gives."""

import json

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="the multi-stream tests use the ONNX Runtime backend (`onnx` extra)")

from conftest import run_derain  # noqa: E402
from derain.export.onnx_export import export_onnx  # noqa: E402
from derain.model import build_model  # noqa: E402
from derain.runtime.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from derain.runtime.stream import run_stream, run_streams  # noqa: E402
from test_runtime import SlowBackend, _write_video  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("multi")
    model = build_model("tiny")
    return {"batch3": export_onnx(model, folder / "tiny-b3.onnx", 48, 64, 3, dynamic_batch=True),
            "batch1": export_onnx(model, folder / "tiny-b1.onnx", 48, 64)}


@pytest.fixture(scope="module")
def batch3_onnx(models):
    return models["batch3"]


def _folder_frames(folder):
    return [cv2.imread(str(path)) for path in sorted(folder.glob("*.png"))]


def test_three_streams_batched_equal_single_stream_runs(tmp_path, models):
    videos = []
    for i, count in enumerate((12, 9, 15)):  # of unequal length: the batch shrinks as streams end
        videos.append(tmp_path / f"cam{i}.avi")
        _write_video(videos[-1], count)
    with OnnxRuntimeBackend(models["batch3"]) as backend:
        calls = []
        infer = backend.run
        backend.run = lambda batch: calls.append(len(batch)) or infer(batch)  # what reaches the session
        stats = run_streams([str(v) for v in videos], [str(tmp_path / f"multi{i}") for i in range(3)], backend,
                            status=False)
    with OnnxRuntimeBackend(models["batch1"]) as backend:  # the reference: one frame per call
        for i, video in enumerate(videos):
            run_stream(str(video), str(tmp_path / f"single{i}"), backend, status=False)
    assert max(calls) == 3 and stats.summary()["batch"]["max"] == 3
    assert sum(calls) == 36 > len(calls)  # fewer calls than frames: batched, and no frame run twice
    summary = stats.summary()
    assert summary["frames_out"] == 36 and [s["frames_out"] for s in summary["streams"]] == [12, 9, 15]
    for i in range(3):
        multi, single = _folder_frames(tmp_path / f"multi{i}"), _folder_frames(tmp_path / f"single{i}")
        assert len(multi) == len(single) == (12, 9, 15)[i]
        for a, b in zip(multi, single):
            np.testing.assert_array_equal(a, b)


def test_realtime_drops_per_source_and_counts_per_stream(tmp_path, batch3_onnx):
    for i in range(2):
        _write_video(tmp_path / f"cam{i}.avi", 40, fps=60)  # paced at 60 fps; each call takes >= 50 ms
    with SlowBackend(batch3_onnx) as backend:
        stats = run_streams([str(tmp_path / "cam0.avi"), str(tmp_path / "cam1.avi")], ["null", "null"], backend,
                            realtime=True, queue_size=2, status=False)
    for stream in stats.streams:
        assert stream.frames_in == 40 and stream.dropped > 5 and stream.frames_out + stream.dropped == 40
    assert stats.total.dropped == sum(s.dropped for s in stats.streams)


def test_stream_command_takes_repeated_sources_and_refuses_unpaired_sinks(tmp_path, batch3_onnx):
    for i in range(2):
        _write_video(tmp_path / f"cam{i}.avi", 6)
    result = run_derain("stream", "--source", tmp_path / "cam0.avi", "--source", tmp_path / "cam1.avi",
                        "--sink", tmp_path / "out0.avi", "--sink", "null", "--onnx", batch3_onnx)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["frames_out"] == 12 and [s["sink"] for s in summary["streams"]] == [str(tmp_path / "out0.avi"), "null"]
    result = run_derain("stream", "--source", tmp_path / "cam0.avi", "--source", tmp_path / "cam1.avi",
                        "--sink", "null", "--onnx", batch3_onnx)
    assert result.returncode == 1 and result.stderr.strip() == \
        "derain: error: --source given 2 times, --sink 1: one sink per source"
