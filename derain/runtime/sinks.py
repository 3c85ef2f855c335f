"""Where derained frames go: a window, a video file, a folder of images, an RTSP server (where
OpenCV has GStreamer) or nowhere. Sinks open on the first frame, when its size is known."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from ..atomic import ensure_directory, temporary_path
from ..data.io import VIDEO_EXTENSIONS, is_video
from ..data.video import VideoReader, VideoWriter, frames_in
from ..errors import DerainError

SCHEMES = "display://N, a video file, a folder, rtsp://... or null"


class Sink:
    def write(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class NullSink(Sink):
    def write(self, frame: np.ndarray) -> None:
        pass


class DisplaySink(Sink):
    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, frame: np.ndarray) -> None:
        cv2.imshow(self.name, frame)
        cv2.waitKey(1)

    def close(self) -> None:
        cv2.destroyWindow(self.name)


class VideoFileSink(Sink):
    """Written under a temporary name and renamed on close, which also runs on Ctrl-C: what was
    written by then is a complete, playable file. Through PyAV (data/video.py); given the `source`
    file, with its rate, timestamps, rotation, audio and subtitles.

    yuv420p needs even sizes: odd frames get one replicated row or column, so no pixel is lost.
    `close` reads the file back and refuses it, in one line, unless every frame is there (a full
    disk must not pass as a short video)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], source: VideoReader | None = None) -> None:
        ensure_directory(path.parent)
        self.path, self.tmp, self.frames, self.aborted = path, temporary_path(path), 0, False
        self.pad = (size[1] % 2, size[0] % 2)  # (rows, columns) to add
        rate = source.rate if source is not None else Fraction(fps).limit_denominator(1001)
        self.writer = VideoWriter(self.tmp, path, (size[0] + self.pad[1], size[1] + self.pad[0]), rate, source)

    def write(self, frame: np.ndarray, pts: int | None = None) -> None:
        if any(self.pad):
            frame = cv2.copyMakeBorder(frame, 0, self.pad[0], 0, self.pad[1], cv2.BORDER_REPLICATE)
        try:
            self.writer.write(frame, pts)
        except DerainError:  # a full disk: nothing half-written stays
            self.abort()
            raise
        self.frames += 1

    def close(self) -> None:
        """Finalize what was written (a stream stopped by Ctrl-C keeps its recording)."""
        if self.aborted:
            return
        try:
            self.writer.close()
        except DerainError:
            self.abort()
            raise
        if not self.frames:
            self.tmp.unlink(missing_ok=True)
            return
        written = frames_in(self.tmp)
        if written != self.frames:
            self.tmp.unlink(missing_ok=True)
            reason = "disk full?" if written < self.frames else "the file does not read back"
            raise DerainError(f"{self.path}: could not write the video ({written} of {self.frames} frames "
                              f"readable; {reason})")
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Discard everything (`derain run` leaves no half-derained video behind)."""
        self.aborted = True
        self.writer.abort()
        self.tmp.unlink(missing_ok=True)


class FolderSink(Sink):
    def __init__(self, folder: Path) -> None:
        ensure_directory(folder)
        self.folder, self.index = folder, 0

    def write(self, frame: np.ndarray) -> None:
        self.index += 1
        path = self.folder / f"{self.index:06d}.png"
        tmp = temporary_path(path)
        if not cv2.imwrite(str(tmp), frame):
            raise DerainError(f"{path}: OpenCV could not write this image")
        os.replace(tmp, path)


def rtsp_publish_pipeline(url: str) -> str:
    """appsrc (BGR frames) -> H.264 that hardware decoders play -> an RTSP server at `url`.

    I420 and the baseline profile: from BGR, videoconvert would negotiate Y444 and x264enc emit
    High 4:4:4, which Jetson's nvv4l2decoder, browsers and most NVRs cannot decode. Needs an RTSP
    server to publish to (e.g. mediamtx) and GStreamer's x264 (plugins-ugly) and rtsp plugins."""
    return ("appsrc ! videoconvert ! video/x-raw,format=I420 ! "
            "x264enc tune=zerolatency speed-preset=superfast bitrate=4000 key-int-max=30 ! "
            f"video/x-h264,profile=baseline ! rtspclientsink location={url}")


class RtspSink(Sink):
    def __init__(self, url: str, fps: float, size: tuple[int, int]) -> None:
        self.writer = cv2.VideoWriter(rtsp_publish_pipeline(url), cv2.CAP_GSTREAMER, 0, fps, size)
        if not self.writer.isOpened():
            raise DerainError(f"{url}: cannot publish RTSP (needs OpenCV with GStreamer and an RTSP server)")

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(frame)

    def close(self) -> None:
        self.writer.release()


@dataclass(frozen=True)
class SinkSpec:
    """A sink URI, parsed once (as jetson-utils' videoOutput does): kind and where."""

    kind: str  # null | display | rtsp | video | folder
    location: str  # window name, URL, or path

    @classmethod
    def parse(cls, uri: str) -> "SinkSpec":
        """Refuses a bad sink, in one line, before any frame is captured."""
        if uri == "null":
            return cls("null", "")
        if uri.startswith("display://"):
            return cls("display", f"derain {uri[len('display://'):]}")
        if uri.startswith("rtsp://"):
            return cls("rtsp", uri)
        if "://" in uri:
            raise DerainError(f"{uri}: unknown sink scheme '{uri.split('://')[0]}://' (use {SCHEMES})")
        path = Path(uri)
        if path.suffix and not is_video(path):
            raise DerainError(f"{uri}: unsupported video type '{path.suffix}' "
                              f"(use {' '.join(VIDEO_EXTENSIONS)} or a folder)")
        ensure_directory(path.parent if path.suffix else path)
        return cls("video" if path.suffix else "folder", uri)

    def open(self, fps: float, size: tuple[int, int]) -> Sink:
        """`size` is (width, height) of the frames to come."""
        if self.kind == "null":
            return NullSink()
        if self.kind == "display":
            return DisplaySink(self.location)
        if self.kind == "rtsp":
            return RtspSink(self.location, fps, size)
        path = Path(self.location)
        return VideoFileSink(path, fps, size) if self.kind == "video" else FolderSink(path)
