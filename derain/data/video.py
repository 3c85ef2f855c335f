"""Video files through PyAV (FFmpeg's libraries, with libx264, in its wheels for x86_64 and aarch64):
the one reader and the one writer of video files, for `run`, `stream`'s file sinks and `calib`.
Cameras, CSI and RTSP stay with OpenCV (GStreamer on a Jetson; runtime/sources.py, sinks.py).

- Reading: frames come upright (a phone clip's display rotation applied: rain falls down in them,
  which the rain mask expects), as uint8 BGR whatever the bit depth, with their timestamps in the
  stream's own time base, and the exact frame rate as a fraction (60000/1001, not 59.94).
- Writing: H.264 (yuv420p, CRF 18, +faststart) in .mp4, .mov and .mkv, Motion JPEG in .avi; the
  source's time base, timestamps and rotation (frames are turned back and the display matrix set,
  so the file shows as the input shows), and its audio and subtitle streams copied packet for
  packet, without re-encoding.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import DerainError

CRF = 18  # x264's "visually lossless" end; its default, 23, visibly softens derained detail
_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}  # the temporary name's suffix differs
COPIED = ("audio", "subtitle")
# The audio and subtitle codecs each container takes as they are (FFmpeg's muxers; MP4 and MOV
# refuse PCM and most subtitle formats at the trailer). Other streams are left out, with a warning.
_COPYABLE = {
    ".mp4": {"aac", "mp3", "ac3", "eac3", "opus", "alac", "flac", "mov_text"},
    ".mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s24le", "pcm_f32le", "mov_text"},
    ".mkv": {"aac", "mp3", "ac3", "eac3", "opus", "vorbis", "flac", "alac", "pcm_s16le", "pcm_s24le", "pcm_f32le",
             "subrip", "ass", "ssa", "webvtt", "hdmv_pgs_subtitle", "dvd_subtitle"},
    ".avi": {"mp3", "ac3", "aac", "pcm_s16le", "pcm_u8"},
}


# Rates containers store inexactly: Matroska keeps a frame's duration in whole nanoseconds, so
# 60000/1001 reads back as 19001/317. A rate this close to an NTSC or whole rate is that rate.
_RATES = [Fraction(n * 1000, 1001) for n in (24, 30, 48, 60, 120, 240)] + [Fraction(n) for n in range(1, 241)]


def exact_rate(rate: Fraction) -> Fraction:
    return next((known for known in _RATES if abs(rate - known) < known * Fraction(1, 10**5)), rate)


def _av():  # noqa: ANN202 - PyAV is imported where video files are touched, so image jobs never need it
    try:
        import av
    except ImportError:
        raise DerainError("video files need PyAV: pip install av") from None
    return av


class VideoReader:
    """Upright uint8 BGR frames of a file's first video stream, with their timestamps."""

    def __init__(self, path: str | Path) -> None:
        av = _av()
        self.path = Path(path)
        try:
            self.container = av.open(str(self.path))
        except (av.FFmpegError, OSError, ValueError) as error:
            raise DerainError(f"{self.path}: cannot open video ({error})") from None
        if not self.container.streams.video:
            self.container.close()
            raise DerainError(f"{self.path}: has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.rate = exact_rate(Fraction(self.stream.average_rate or self.stream.guessed_rate or 25))
        self.time_base = self.stream.time_base or 1 / self.rate
        self.frames = int(self.stream.frames or 0)  # as the container says; 0 when it does not
        self._decoded = self.container.decode(self.stream)
        self._next = self._decode()
        if self._next is None:
            self.container.close()
            raise DerainError(f"{self.path}: video has no readable frames")
        self.rotation = int(self._next[2])  # degrees counter-clockwise that display turns the stored frames
        self.width, self.height = self._next[0].shape[1], self._next[0].shape[0]
        self.pts: int | None = None  # the timestamp of the frame `read` returned last

    def _decode(self) -> tuple[np.ndarray, int | None, int] | None:
        av = _av()
        try:
            frame = next(self._decoded, None)
        except av.FFmpegError as error:
            raise DerainError(f"{self.path}: cannot decode video ({error})") from None
        if frame is None:
            return None
        rotation, bgr = frame.rotation, frame.to_ndarray(format="bgr24")
        upright = np.rot90(bgr, k=round(rotation / 90)) if rotation else bgr
        return np.ascontiguousarray(upright), frame.pts, rotation

    def read(self) -> np.ndarray | None:
        """The next frame (None at the end); its timestamp in `pts`."""
        if self._next is None:
            return None
        frame, self.pts, _ = self._next
        self._next = self._decode()
        return frame

    def __iter__(self) -> Iterator[np.ndarray]:
        while (frame := self.read()) is not None:
            yield frame

    def close(self) -> None:
        self.container.close()


class VideoWriter:
    """Frames into a video file; with `source`, the source's rate, time base, timestamps, rotation
    and audio/subtitle streams. `path` may be a temporary name: the container follows the suffix
    of `shown`, the name errors give."""

    def __init__(self, path: Path, shown: Path, size: tuple[int, int], rate: Fraction,
                 source: VideoReader | None = None) -> None:
        av = _av()
        self.path, self.shown, self.source, self.count = path, shown, source, 0
        kind = shown.suffix.lower()
        mp4 = kind in (".mp4", ".mov")
        try:
            self.container = av.open(str(path), "w", format=_FORMATS[kind],
                                     options={"movflags": "+faststart"} if mp4 else {})
        except (av.FFmpegError, OSError) as error:
            raise DerainError(f"{shown}: cannot write a video here ({error})") from None
        self.rotation = source.rotation if source is not None else 0
        width, height = size if self.rotation % 180 == 0 else size[::-1]  # stored as the source stores them
        h264 = kind != ".avi"
        self.video = self.container.add_stream("libx264" if h264 else "mjpeg", rate=rate,
                                               options={"crf": str(CRF)} if h264 else {"qmin": "1", "qmax": "2"})
        self.video.width, self.video.height = width, height
        self.video.pix_fmt = "yuv420p" if h264 else "yuvj420p"
        # AVI has one frame per tick of its time base: frames are counted there, not timestamped.
        self.timestamped = source is not None and h264
        self.time_base = source.time_base if self.timestamped else 1 / rate
        self.video.codec_context.time_base = self.time_base
        if self.rotation and hasattr(self.video, "set_display_rotation"):  # PyAV 15+
            self.video.set_display_rotation(self.rotation)
        elif self.rotation:  # older PyAV cannot set a display matrix: write the frames upright instead
            self.rotation, self.video.width, self.video.height = 0, size[0], size[1]
        self.copied = {}
        for stream in source.container.streams if source is not None else ():
            if stream.type not in COPIED:
                continue
            codec = stream.codec_context.name
            if codec in _COPYABLE[kind]:
                self.copied[stream.index] = self.container.add_stream_from_template(stream)
            else:
                tqdm.write(f"derain: warning: {source.path}: its {codec} {stream.type} stream cannot go into a "
                           f"{kind} file as it is; left out", file=sys.stderr)  # on a line of its own, not a bar's

    def write(self, bgr: np.ndarray, pts: int | None = None) -> None:
        av = _av()
        stored = np.ascontiguousarray(np.rot90(bgr, k=-round(self.rotation / 90))) if self.rotation else bgr
        frame = av.VideoFrame.from_ndarray(stored, format="bgr24")
        frame.pts, frame.time_base = (pts if self.timestamped and pts is not None else self.count), self.time_base
        self.count += 1
        self._mux(self.video.encode(frame))

    def _mux(self, packets: list) -> None:  # noqa: ANN001
        av = _av()
        try:
            self.container.mux(packets)
        except (av.FFmpegError, OSError) as error:
            raise DerainError(f"{self.shown}: could not write the video ({error})") from None

    def close(self) -> None:
        """Flush the encoder, copy the source's other streams, finalize the file."""
        av = _av()
        self._mux(self.video.encode(None))
        if self.copied:
            with av.open(str(self.source.path)) as source:
                streams = [s for s in source.streams if s.index in self.copied]
                for packet in source.demux(streams):
                    if packet.dts is None:  # the demuxer's flush packets
                        continue
                    packet.stream = self.copied[packet.stream.index]
                    self._mux([packet])
        try:
            self.container.close()
        except (av.FFmpegError, OSError) as error:
            raise DerainError(f"{self.shown}: could not finish the video ({error})") from None

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - a half-written file is deleted next; its trailer does not matter
            pass


def frames_in(path: Path) -> int:
    """Frames a written video file holds, counted from its packets (0 if it does not open)."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            return sum(1 for packet in container.demux(video=0) if packet.size)
    except (av.FFmpegError, OSError, IndexError):
        return 0
