"""Video files as phones and cameras make them, through the real command line and PyAV: H.264 with
AAC audio, a 59.94 fps (60000/1001) rate and a 90-degree display rotation."""

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from conftest import run_derain  # noqa: E402
from derain.data.metrics import psnr_y  # noqa: E402
from derain.data.video import VideoReader  # noqa: E402
from derain.runtime.factory import open_backend  # noqa: E402

RATE = Fraction(60000, 1001)
FRAMES = 24


def _phone_clip(path: Path, rotation: int = -90) -> None:
    """Stored 96x64 landscape, shown as 64x96 portrait (rotation -90: turned 90 degrees clockwise,
    as phones record portrait video); a sine tone in AAC beside it."""
    container = av.open(str(path), "w", options={"movflags": "+faststart"})
    video = container.add_stream("libx264", rate=RATE, options={"crf": "12"})
    video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
    video.set_display_rotation(rotation)
    audio = container.add_stream("aac", rate=48000)
    rows, cols = np.mgrid[0:64, 0:96]
    for i in range(FRAMES):  # a smooth moving scene, as camera footage is
        image = np.stack([60 + rows + 2 * i, 60 + cols + i, 128 + 30 * np.sin((rows + cols + 4 * i) / 12)], axis=-1)
        container.mux(video.encode(av.VideoFrame.from_ndarray(image.astype(np.uint8), format="rgb24")))
    samples = 48000 * FRAMES // 60
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48000)).astype(np.float32)
    size = 1024  # AAC frames
    for start in range(0, samples - size + 1, size):
        frame = av.AudioFrame.from_ndarray(np.stack([tone[start:start + size]] * 2), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 48000, start
        container.mux(audio.encode(frame))
    container.mux(video.encode(None))
    container.mux(audio.encode(None))
    container.close()


def _audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(audio=0) if p.size]


def _psnr_y(outputs: list[np.ndarray], expected: list[np.ndarray]) -> float:
    """Y-channel PSNR over the whole clip, as the papers score (H.264 stores chroma at quarter size)."""
    bgr_to_rgb = lambda frames: np.concatenate(frames)[..., ::-1].astype(np.float32) / 255.0  # noqa: E731
    return psnr_y(bgr_to_rgb(outputs), bgr_to_rgb(expected))


def test_a_phone_clip_keeps_codec_audio_rate_rotation_and_frames(tmp_path):
    source, target = tmp_path / "phone.mp4", tmp_path / "out" / "phone.mp4"
    _phone_clip(source)
    result = run_derain("run", source, "-o", target)  # the bundled checkpoint: outputs like a real derain
    assert result.returncode == 0, result.stderr
    with av.open(str(target)) as out, av.open(str(source)) as original:
        video = out.streams.video[0]
        assert video.codec_context.name == "h264" and video.codec_context.pix_fmt == "yuv420p"
        assert video.average_rate == RATE == original.streams.video[0].average_rate
        assert [s.type for s in out.streams] == ["video", "audio"]
    assert _audio_packets(target) == _audio_packets(source)  # copied, not re-encoded
    derained, rainy = VideoReader(target), VideoReader(source)
    assert derained.rotation == rainy.rotation == -90 and (derained.width, derained.height) == (64, 96)
    outputs, inputs = list(derained), list(rainy)
    assert len(outputs) == len(inputs) == FRAMES
    with open_backend("torch") as backend:
        expected = [backend.infer([frame])[0] for frame in inputs]  # the network's output on upright frames
    assert _psnr_y(outputs, expected) > 40.0  # what H.264 at CRF 18 costs


def test_an_mkv_and_an_avi_come_back_with_every_frame_and_the_exact_rate(tmp_path, tiny_checkpoint):
    _phone_clip(tmp_path / "clip.mp4", rotation=0)
    for suffix, codec in ((".mkv", "h264"), (".avi", "mjpeg")):
        target = tmp_path / f"out{suffix}"
        result = run_derain("run", tmp_path / "clip.mp4", "-o", target, "--checkpoint", tiny_checkpoint)
        assert result.returncode == 0, result.stderr
        reader = VideoReader(target)
        assert reader.stream.codec_context.name == codec and len(list(reader)) == FRAMES
        assert reader.rate == RATE


def test_an_audio_stream_the_target_cannot_hold_is_left_out_with_a_warning(tmp_path, tiny_checkpoint):
    """PCM audio from an AVI cannot go into an MP4 as it is: the video is written, the audio left out."""
    container = av.open(str(tmp_path / "pcm.avi"), "w")
    video = container.add_stream("mjpeg", rate=25)
    video.width, video.height, video.pix_fmt = 64, 48, "yuvj420p"
    audio = container.add_stream("pcm_s16le", rate=16000)
    for i in range(10):
        container.mux(video.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8), format="rgb24")))
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 640), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 16000, i * 640
        container.mux(audio.encode(frame))
    container.mux(video.encode(None))
    container.close()
    for suffix, kept in ((".mp4", ["video"]), (".mkv", ["video", "audio"])):
        result = run_derain("run", tmp_path / "pcm.avi", "-o", tmp_path / f"out{suffix}", "--checkpoint", tiny_checkpoint)
        assert result.returncode == 0, result.stderr
        assert ("pcm_s16le audio stream cannot go into a .mp4 file" in result.stderr) == (suffix == ".mp4")
        with av.open(str(tmp_path / f"out{suffix}")) as out:
            assert [s.type for s in out.streams] == kept and out.streams.video[0].frames in (0, 10)


def test_a_10_bit_clip_is_read_and_written_as_8_bit_h264(tmp_path, tiny_checkpoint):
    container = av.open(str(tmp_path / "ten.mp4"), "w")
    video = container.add_stream("libx264", rate=25)
    video.width, video.height, video.pix_fmt = 64, 48, "yuv420p10le"
    for i in range(6):
        frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
        container.mux(video.encode(frame.reformat(format="yuv420p10le")))
    container.mux(video.encode(None))
    container.close()
    result = run_derain("run", tmp_path / "ten.mp4", "-o", tmp_path / "out.mp4", "--checkpoint", tiny_checkpoint)
    assert result.returncode == 0, result.stderr
    reader = VideoReader(tmp_path / "out.mp4")
    assert reader.stream.codec_context.pix_fmt == "yuv420p" and len(list(reader)) == 6


def test_a_cut_off_clip_is_one_line_and_leaves_nothing(tmp_path, tiny_checkpoint):
    _phone_clip(tmp_path / "whole.mp4", rotation=0)
    data = (tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3])  # +faststart: the index survives, the frames do not
    result = run_derain("run", tmp_path / "cut.mp4", "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint)
    errors = [line for line in result.stderr.splitlines() if line.startswith("derain:")]
    assert result.returncode == 1 and len(errors) == 1 and "truncated or damaged video" in errors[0], result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
