"""RTSP for real on 127.0.0.1: a GStreamer RTSP server (gst-rtsp-server, through the system
Python's GObject bindings) started by each test. Skipped where GStreamer, its RTSP server library
or the x264 encoder are not installed (Debian: gstreamer1.0-tools gstreamer1.0-plugins-good
gstreamer1.0-plugins-ugly gstreamer1.0-rtsp python3-gi gir1.2-gst-rtsp-server-1.0)."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import cv2
import pytest

from derain.runtime.sinks import rtsp_publish_pipeline
from derain.runtime.sources import RtspSource

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = """
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer
Gst.init(None)
port, mode, target = sys.argv[1], sys.argv[2], sys.argv[3]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
if mode == "play":  # a camera: clients read from it
    factory.set_launch("( videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=120,framerate=15/1 "
                       "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! rtph264pay name=pay0 pt=96 )")
else:  # what derain's sink publishes to: the stream is stored as it arrives
    factory.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
    factory.set_launch(f"( rtph264depay name=depay0 ! h264parse ! matroskamux ! filesink location={target} )")
factory.set_shared(True)
server.get_mount_points().add_factory("/test", factory)
server.attach(None)
print("ready", flush=True)
GLib.MainLoop().run()
"""


def _gstreamer_ready() -> bool:
    if shutil.which("gst-launch-1.0") is None or not Path(SYSTEM_PYTHON).exists():
        return False
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    if subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode != 0:
        return False
    return subprocess.run(["gst-inspect-1.0", "x264enc"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not _gstreamer_ready(), reason="GStreamer with gst-rtsp-server and x264 not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server(port: int, mode: str, target: Path | None = None) -> subprocess.Popen:
    server = subprocess.Popen([SYSTEM_PYTHON, "-c", SERVER, str(port), mode, str(target or "")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready", server.stderr.read()
    return server


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(timeout=20)


def test_rtsp_source_reconnects_with_backoff_after_the_server_drops(monkeypatch):
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")  # a dropped server ends reads
    port = _free_port()
    url = f"rtsp://127.0.0.1:{port}/test"
    server = _server(port, "play")
    try:
        source = RtspSource(url, max_backoff=2.0, max_attempts=20)
        assert all(source.read() is not None for _ in range(5))
        _stop(server)
        time.sleep(1)
        server = _server(port, "play")  # back, as a rebooted camera would be
        deadline = time.monotonic() + 60
        while source.reconnects == 0 and time.monotonic() < deadline:
            source.read()  # buffered frames first, then failed reads, then a reopen with backoff
        assert source.reconnects >= 1
        frame = source.read()
        assert frame is not None and frame.shape == (120, 160, 3)  # frames again from the new server
        source.close()
    finally:
        _stop(server)


def test_rtsp_sink_stream_is_h264_baseline_that_a_client_decodes(tmp_path):
    """The sink's own pipeline, fed by a test source instead of OpenCV's appsrc (PyPI's OpenCV has no
    GStreamer), publishes to the server; a client (OpenCV's FFmpeg) decodes what arrived."""
    # GStreamer 1.22's rtspclientsink now and then never finishes after the last frame was delivered
    # (1 run in 5 to 1 in 2 on our CI machines: the server's file is complete, the client waits on),
    # so a publish that hangs is tried again on a fresh server, up to five times; one must exit 0.
    for attempt in range(5):
        port = _free_port()
        received = tmp_path / f"received-{attempt}.mkv"
        server = _server(port, "record", received)
        try:
            pipeline = rtsp_publish_pipeline(f"rtsp://127.0.0.1:{port}/test").replace(
                "appsrc", "videotestsrc num-buffers=45 ! video/x-raw,format=BGR,width=160,height=120,framerate=15/1")
            result = subprocess.run(["gst-launch-1.0", "-q", "-e", *pipeline.split()], capture_output=True, text=True,
                                    timeout=20, env={**os.environ, "GST_DEBUG": "0"})
        except subprocess.TimeoutExpired:
            continue
        finally:
            time.sleep(1)
            _stop(server)
        assert result.returncode == 0, result.stderr
        break
    else:
        pytest.fail("rtspclientsink hung after publishing, five times in a row")
    capture = cv2.VideoCapture(str(received))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames >= 30
    caps = subprocess.run(["gst-launch-1.0", "-v", "filesrc", f"location={received}", "!", "matroskademux", "!",
                           "h264parse", "!", "fakesink"], capture_output=True, text=True, timeout=60).stdout
    assert "baseline" in caps and "high-4:4:4" not in caps  # what Jetson's decoder, browsers and NVRs play
