"""Where frames come from: a video file, a folder of images, a V4L2 camera, a Jetson CSI camera
(GStreamer nvarguscamerasrc) or an RTSP stream (reconnected with backoff when it drops)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..data.io import files_in, is_image, is_video
from ..data.video import VideoReader
from ..errors import DerainError

SCHEMES = "a video file, a folder of images, /dev/videoN, v4l2:///dev/videoN, csi://N or rtsp://..."


def csi_pipeline(sensor: int, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    """GStreamer pipeline for a Jetson CSI camera (needs JetPack's OpenCV, built with GStreamer)."""
    return (f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
            f"framerate={fps}/1, format=NV12 ! nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! "
            "video/x-raw, format=BGR ! appsink drop=true max-buffers=2")


class Source:
    """uint8 BGR frames; `read` returns None at the end. `live` sources pace themselves."""

    live = False
    fps = 30.0
    frames = 0  # how many frames a file or folder holds, as far as known (0: unknown or live)

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class CaptureSource(Source):
    """Anything cv2.VideoCapture opens: files, V4L2 devices, GStreamer pipelines."""

    def __init__(self, capture: cv2.VideoCapture, name: str, live: bool) -> None:
        self.capture, self.name, self.live = capture, name, live
        self.fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
        self.frames = 0 if live else max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))

    def read(self) -> np.ndarray | None:
        ok, frame = self.capture.read()
        return frame if ok else None

    def close(self) -> None:
        self.capture.release()


class VideoFileSource(Source):
    """A video file through PyAV: upright frames, the exact rate, timestamps (data/video.py)."""

    def __init__(self, path: Path) -> None:
        self.reader = VideoReader(path)
        self.fps, self.frames = float(self.reader.rate), self.reader.frames

    def read(self) -> np.ndarray | None:
        return self.reader.read()

    def close(self) -> None:
        self.reader.close()


class FolderSource(Source):
    def __init__(self, folder: Path, fps: float = 30.0) -> None:
        self.files = files_in(folder)
        if not self.files:
            raise DerainError(f"{folder}: folder has no images")
        self.index, self.fps, self.frames = 0, fps, len(self.files)

    def read(self) -> np.ndarray | None:
        while self.index < len(self.files):
            path = self.files[self.index]
            self.index += 1
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is None:
                raise DerainError(f"{path}: cannot read image (corrupt or not an image)")
            return frame
        return None


class RtspSource(Source):
    """An RTSP stream that reopens itself with exponential backoff when frames stop coming."""

    live = True

    def __init__(self, url: str, max_backoff: float = 30.0, max_attempts: int | None = None) -> None:
        self.url, self.max_backoff, self.max_attempts = url, max_backoff, max_attempts
        self.reconnects = 0
        self.capture = self._open()
        if self.capture is None:
            raise DerainError(f"{url}: cannot open RTSP stream")
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or 30.0

    def _open(self) -> cv2.VideoCapture | None:
        capture = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG)
        return capture if capture.isOpened() else None

    def read(self) -> np.ndarray | None:
        delay, attempts = 1.0, 0
        while True:
            if self.capture is not None:
                ok, frame = self.capture.read()
                if ok:
                    return frame
                self.capture.release()
            attempts += 1
            if self.max_attempts is not None and attempts > self.max_attempts:
                return None
            time.sleep(delay)
            delay = min(delay * 2, self.max_backoff)
            self.capture = self._open()
            self.reconnects += 1

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()


@dataclass(frozen=True)
class SourceSpec:
    """A source URI, parsed once (as jetson-utils' videoSource does): kind and where."""

    kind: str  # rtsp | csi | v4l2 | folder | file
    location: str  # URL, sensor id, device or path

    @classmethod
    def parse(cls, uri: str) -> "SourceSpec":
        if uri.startswith(("rtsp://", "rtsps://")):
            return cls("rtsp", uri)
        if uri.startswith("csi://"):
            sensor = uri[len("csi://"):]
            if not sensor.isdigit():
                raise DerainError(f"{uri}: expected csi://N with N the sensor id")
            return cls("csi", sensor)
        device = uri[len("v4l2://"):] if uri.startswith("v4l2://") else uri
        if device.startswith("/dev/video"):
            return cls("v4l2", device)
        if "://" in uri:
            raise DerainError(f"{uri}: unknown source scheme '{uri.split('://')[0]}://' (use {SCHEMES})")
        path = Path(uri)
        if path.is_dir():
            return cls("folder", uri)
        if not path.exists():
            raise DerainError(f"{uri}: no such file or folder")
        if not is_video(path) and not is_image(path):
            raise DerainError(f"{uri}: unsupported source (use {SCHEMES})")
        return cls("file", uri)

    def open(self) -> Source:
        if self.kind == "rtsp":
            return RtspSource(self.location)
        if self.kind == "csi":
            capture = cv2.VideoCapture(csi_pipeline(int(self.location)), cv2.CAP_GSTREAMER)
            if not capture.isOpened():
                raise DerainError(f"csi://{self.location}: cannot open the CSI camera (this OpenCV needs "
                                  "GStreamer: use JetPack's)")
            return CaptureSource(capture, f"csi://{self.location}", live=True)
        if self.kind == "v4l2":
            capture = cv2.VideoCapture(self.location, cv2.CAP_V4L2)
            if not capture.isOpened():
                raise DerainError(f"{self.location}: cannot open the camera")
            return CaptureSource(capture, self.location, live=True)
        if self.kind == "folder":
            return FolderSource(Path(self.location))
        return VideoFileSource(Path(self.location))
