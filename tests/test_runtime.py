import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="the runtime tests use the ONNX Runtime backend (`onnx` extra)")

from conftest import run_derain  # noqa: E402
from derain.engines.device import DeviceInfo  # noqa: E402
from derain.engines.store import Manifest, check_engine, engine_path, save_engine  # noqa: E402
from derain.export.onnx_export import export_onnx  # noqa: E402
from derain.model import build_model  # noqa: E402
from derain.runtime.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from derain.runtime.stream import run_stream  # noqa: E402
from derain.runtime.tiling import Tiler  # noqa: E402


def _write_video(path: Path, frames: int, size=(64, 48), fps=30) -> None:
    """Moving bright streaks over a gradient: every frame differs."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    base = np.tile(np.linspace(40, 160, size[0], dtype=np.uint8), (size[1], 1))
    for i in range(frames):
        frame = np.dstack([base] * 3).copy()
        for x in range(i % 7, size[0], 7):
            cv2.line(frame, (x, 0), (x + 6, size[1] - 1), (235, 235, 235), 1)
        writer.write(frame)
    writer.release()


def _frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (item := capture.read())[0]:
        frames.append(item[1])
    capture.release()
    return frames


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("tiny")
    folder = tmp_path_factory.mktemp("rt")
    return {"tile": export_onnx(model, folder / "tiny.onnx", 32, 32),
            "whole": export_onnx(model, folder / "tiny-whole.onnx", 96, 128)}


def test_stream_of_60_frames_to_a_file(tmp_path, tiny_onnx):
    _write_video(tmp_path / "in.avi", 60)
    result = run_derain("stream", "--source", tmp_path / "in.avi", "--sink", tmp_path / "out.avi",
                        "--backend", "onnxruntime", "--onnx", tiny_onnx["tile"])
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["frames_in"] == summary["frames_out"] == 60 and summary["dropped"] == 0
    assert summary["latency_ms"]["p95"] >= summary["latency_ms"]["p50"] > 0
    inputs, outputs = _frames(tmp_path / "in.avi"), _frames(tmp_path / "out.avi")
    assert len(outputs) == 60 and outputs[0].shape == inputs[0].shape
    assert np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(inputs, outputs)]) > 1.0


class SlowBackend(OnnxRuntimeBackend):
    """The real ONNX Runtime backend on a device too slow for the camera."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(0.05)
        return super().run(batch)


def test_realtime_drops_the_oldest_frames_when_inference_lags(tmp_path, tiny_onnx):
    _write_video(tmp_path / "in.avi", 60, fps=60)  # paced at 60 fps; inference takes >= 50 ms
    stats = run_stream(str(tmp_path / "in.avi"), str(tmp_path / "out.avi"), SlowBackend(tiny_onnx["tile"]),
                       realtime=True, queue_size=2, status=False)
    assert stats.frames_in == 60 and stats.dropped > 10
    assert stats.frames_out + stats.dropped == stats.frames_in
    assert len(_frames(tmp_path / "out.avi")) == stats.frames_out


def test_sigint_leaves_a_playable_file(tmp_path, tiny_onnx):
    _write_video(tmp_path / "in.avi", 900)  # 30 s of video, paced in real time
    process = subprocess.Popen([sys.executable, "-m", "derain", "stream", "--source", str(tmp_path / "in.avi"),
                                "--sink", str(tmp_path / "out.mp4"), "--backend", "onnxruntime", "--onnx",
                                str(tiny_onnx["tile"]), "--realtime"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.time() + 120
    while not list(tmp_path.glob(".out.*.tmp.mp4")) and time.time() < deadline:  # frames are being written
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] and 0 < summary["frames_out"] < 900
    frames = _frames(tmp_path / "out.mp4")
    assert len(frames) == summary["frames_out"] and frames[0].shape == (48, 64, 3)
    assert not list(tmp_path.glob(".out.*"))  # the temporary became out.mp4


@pytest.mark.parametrize("source,expected", [("missing.mp4", "no such file or folder"),
                                             ("corrupt.mp4", "cannot open video"),
                                             ("gopher://camera", "unknown source scheme 'gopher://'")])
def test_bad_sources_are_one_line_errors(tmp_path, tiny_onnx, source, expected):
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(300))
    uri = source if "://" in source else str(tmp_path / source)
    result = run_derain("stream", "--source", uri, "--sink", "null", "--onnx", tiny_onnx["tile"])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and source.split("/")[-1] in lines[0]


def _fake_engine(store: Path, device: DeviceInfo) -> Path:
    manifest = Manifest(name="tiny", precision="fp16", device=device,
                        input={"name": "rainy", "shape": [1, 3, 32, 32], "dtype": "float"}, onnx_sha256="0" * 64,
                        build={}, build_seconds=1.0, created="2026-11-24T00:00:00+00:00")
    return save_engine(b"not a real engine", manifest, engine_path(store, device, "tiny", "fp16"))


def test_an_engine_built_for_another_device_is_refused(tmp_path):
    orin = DeviceInfo(gpu="Orin", compute_capability="8.7", tensorrt="10.3.0")
    engine = _fake_engine(tmp_path / "engines", orin)
    assert engine == tmp_path / "engines" / "orin-sm87-trt10.3.0" / "tiny.fp16.engine"
    h100 = DeviceInfo(gpu="NVIDIA H100 80GB HBM3", compute_capability="9.0", tensorrt="10.3.0")
    with pytest.raises(Exception, match="built for GPU Orin .sm 8.7., this is NVIDIA H100"):
        check_engine(engine, h100)
    newer_trt = DeviceInfo(gpu="Orin", compute_capability="8.7", tensorrt="10.13.0")
    with pytest.raises(Exception, match="built for TensorRT 10.3.0, this is TensorRT 10.13.0"):
        check_engine(engine, newer_trt)
    patch_release = DeviceInfo(gpu="Orin", compute_capability="8.7", tensorrt="10.3.1")  # also refused
    with pytest.raises(Exception, match="built for TensorRT 10.3.0, this is TensorRT 10.3.1"):
        check_engine(engine, patch_release)
    assert check_engine(engine, orin).name == "tiny"
    result = run_derain("stream", "--source", "missing.avi", "--sink", "null", "--engine", engine)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "built for Orin (sm 8.7, TensorRT 10.3.0)" in lines[0]
    listing = run_derain("info", "--model", "tiny", "--store", tmp_path / "engines")
    assert "tiny.fp16  Orin sm8.7 TensorRT 10.3.0" in listing.stdout


def test_tiles_blend_without_seams_and_match_the_whole_frame_inside(tiny_onnx):
    """Tiled inference of a 96x128 frame through a 32x32 model vs the same weights at 96x128 in one
    piece. The network is not local (per-image mask threshold, clustering), so tiles cannot match
    exactly; away from the borders the mean difference stays under 0.02 (of 1.0)."""
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.random((96, 128, 3)).astype(np.float32), (0, 0), 3)
    tiled = OnnxRuntimeBackend(tiny_onnx["tile"]).infer_rgb(frame)
    whole = OnnxRuntimeBackend(tiny_onnx["whole"]).infer_rgb(frame)
    inside = (slice(8, -8), slice(8, -8))
    assert tiled.shape == whole.shape == frame.shape
    assert np.abs(tiled - whole)[inside].mean() < 0.02
    tiler = Tiler(32, 32, overlap=8)
    tiles, offsets = tiler.split(frame)
    assert np.abs(tiler.merge(tiles, offsets, 96, 128) - frame).max() < 1e-6  # blending itself adds no seam


def _derain_without_torch(*args: str) -> subprocess.CompletedProcess:
    """The command line in a process where torch cannot be imported, as on a Jetson without it."""
    script = ("import sys; sys.modules['torch'] = None\n"
              f"from derain.cli import main\nsys.exit(main({[str(a) for a in args]!r}))")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)


def test_the_runtime_runs_without_torch(tmp_path, tiny_onnx):
    """Jetson images may carry TensorRT, NumPy and OpenCV only: the stream must not need torch."""
    _write_video(tmp_path / "in.avi", 5)
    result = _derain_without_torch("stream", "--source", tmp_path / "in.avi", "--sink", "null", "--onnx",
                                   tiny_onnx["tile"])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["frames_out"] == 5


def test_bench_writes_one_entry_per_backend(tmp_path, tiny_onnx, tiny_checkpoint):
    output = tmp_path / "runtime.json"
    for backend in (["--onnx", tiny_onnx["tile"]], ["--backend", "torch", "--checkpoint", tiny_checkpoint]):
        result = run_derain("bench", *backend, "--sizes", "64x48,40x30", "--warmup", 1, "--iterations", 2,
                            "-o", output)
        assert result.returncode == 0, result.stderr
    runs = json.loads(output.read_text())["runs"]
    assert set(runs) == {"onnxruntime", "torch"}
    for run in runs.values():
        assert [row["size"] for row in run["results"]] == ["64x48", "40x30"]
        assert all(row["p95_ms"] >= row["median_ms"] > 0 and row["fps"] > 0 for row in run["results"])
    result = run_derain("bench", "--onnx", tiny_onnx["tile"], "--sizes", "wide", "-o", output)
    assert result.returncode == 1 and "--sizes wide: expected WxH" in result.stderr


def test_build_and_validate_engine_without_tensorrt_are_one_line_errors(tmp_path, tiny_onnx):
    result = run_derain("build", tiny_onnx["tile"], "--store", tmp_path / "engines")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "TensorRT is not installed here" in lines[0]
    assert not (tmp_path / "engines").exists()
    orin = DeviceInfo(gpu="Orin", compute_capability="8.7", tensorrt="10.3.0")
    engine = _fake_engine(tmp_path / "engines", orin)
    result = run_derain("validate", "--onnx", tiny_onnx["tile"], "--engine", engine, "--max-loss-db", 1,
                        "-o", tmp_path / "report")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "built for Orin (sm 8.7, TensorRT 10.3.0)" in lines[0]
    assert not (tmp_path / "report").exists()


def test_padding_to_a_model_size_works_for_one_pixel_rows():
    from derain.data.io import pad_to
    from derain.validate.report import centre_crop

    row = np.linspace(0, 1, 12, dtype=np.float32).reshape(1, 4, 3)
    assert pad_to(row, 3, 6).shape == (3, 6, 3)
    assert np.array_equal(pad_to(row, 3, 6)[2, :4], row[0])  # repeated, as a 1-pixel row cannot mirror
    assert centre_crop(row, 3, 4).shape == (3, 4, 3)
    assert np.array_equal(pad_to(np.arange(6.0).reshape(2, 3, 1), 2, 5)[0, :, 0], [0, 1, 2, 1, 0])  # mirrored


def test_rtsp_sink_streams_i420_h264_baseline_that_hardware_decoders_play():
    from derain.runtime.sinks import rtsp_publish_pipeline

    pipeline = rtsp_publish_pipeline("rtsp://127.0.0.1:8554/derained")
    convert, caps = pipeline.index("videoconvert"), pipeline.index("video/x-raw,format=I420")
    assert convert < caps < pipeline.index("x264enc") < pipeline.index("video/x-h264,profile=baseline")
    assert pipeline.endswith("rtspclientsink location=rtsp://127.0.0.1:8554/derained")


def test_rtsp_encoder_caps_negotiate_where_gstreamer_is_installed():
    import shutil
    import subprocess

    from derain.runtime.sinks import rtsp_publish_pipeline

    if shutil.which("gst-launch-1.0") is None:
        pytest.skip("GStreamer is not installed here (gstreamer1.0-tools, -plugins-ugly)")
    encoder = rtsp_publish_pipeline("x").split(" ! rtspclientsink")[0].replace("appsrc", "videotestsrc num-buffers=5")
    result = subprocess.run(["gst-launch-1.0", "-q", *f"{encoder} ! fakesink".split()], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_validate_runs_without_torch(tmp_path, tiny_onnx):
    """`derain validate` on a Jetson: ONNX Runtime (or an engine), paired images, no PyTorch."""
    folder = tmp_path / "pairs"
    for sub in ("rain", "norain"):
        (folder / sub).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(folder / sub / f"{i}.png"),
                        np.random.default_rng(i + (sub == "rain")).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    result = _derain_without_torch("validate", "--data", folder, "--onnx", tiny_onnx["tile"], "--int8",
                                   tiny_onnx["tile"], "--max-loss-db", "1", "-o", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "report" / "report.json").read_text())["images"] == 2


def test_source_and_sink_uris_are_parsed_once_into_specs(tmp_path):
    from derain.runtime.sinks import SinkSpec
    from derain.runtime.sources import SourceSpec

    _write_video(tmp_path / "in.avi", 2)
    assert SourceSpec.parse("rtsp://127.0.0.1:8554/cam") == SourceSpec("rtsp", "rtsp://127.0.0.1:8554/cam")
    assert SourceSpec.parse("csi://1") == SourceSpec("csi", "1")
    assert SourceSpec.parse("v4l2:///dev/video2") == SourceSpec("v4l2", "/dev/video2") == SourceSpec.parse("/dev/video2")
    assert SourceSpec.parse(str(tmp_path)) == SourceSpec("folder", str(tmp_path))
    assert SourceSpec.parse(str(tmp_path / "in.avi")).kind == "file"
    assert SinkSpec.parse("display://0") == SinkSpec("display", "derain 0")
    assert SinkSpec.parse(str(tmp_path / "o" / "x.mp4")) == SinkSpec("video", str(tmp_path / "o" / "x.mp4"))
    assert SinkSpec.parse(str(tmp_path / "frames")).kind == "folder" and (tmp_path / "frames").is_dir()
    for bad, message in (("ftp://x", "unknown source scheme"), ("csi://left", "sensor id"), ("nope.avi", "no such")):
        with pytest.raises(Exception, match=message):
            SourceSpec.parse(bad)
    with pytest.raises(Exception, match="unsupported video type"):
        SinkSpec.parse(str(tmp_path / "x.gif"))


def test_run_with_an_onnx_model_needs_no_torch(tmp_path, tiny_onnx):
    _write_video(tmp_path / "in.avi", 3)
    result = _derain_without_torch("run", tmp_path / "in.avi", "-o", tmp_path / "out.avi", "--onnx", tiny_onnx["tile"])
    assert result.returncode == 0, result.stderr
    assert cv2.VideoCapture(str(tmp_path / "out.avi")).read()[0]
