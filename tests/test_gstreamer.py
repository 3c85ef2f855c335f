"""The `derain` GStreamer element with real GStreamer: found after `eval "$(derain gstreamer --env)"`,
every frame of a pipeline equal to `derain run` on it (odd width: padded rows), formats, strides,
timestamps, passthrough, EOS and the LATENCY query through appsrc/appsink in the system Python,
errors as one line, and every gst-launch line of docs/gstreamer.md. Skipped only where GStreamer's Python plugin loader is not installed (.ci/run
installs it)."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_derain

from derain.gstreamer import environment

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"
JETSON_ELEMENTS = {"nvv4l2decoder", "nvvidconv", "nvv4l2h264enc"}  # JetPack's: checked by name only
FRAMES, HEIGHT, WIDTH = 3, 96, 161  # RGB at width 161: rows of 484 bytes, one of padding


def _loader_ready() -> bool:
    if shutil.which("gst-launch-1.0") is None or not Path(SYSTEM_PYTHON).exists():
        return False
    return subprocess.run(["gst-inspect-1.0", "python"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not _loader_ready(), reason="GStreamer's Python plugin loader is not installed "
                                "(python3-gst-1.0 gstreamer1.0-python3-plugin-loader)")


@pytest.fixture(scope="module")
def gst_env(tmp_path_factory):
    """The element's environment, with a registry of its own: a GStreamer process started without
    the element's PYTHONPATH (the RTSP camera's, say) would record the Python loader as failed."""
    registry = tmp_path_factory.mktemp("gst") / "registry.bin"
    return {**os.environ, **environment(), "GST_REGISTRY": str(registry), "GST_DEBUG": "0"}


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Three real rainy frames (the shipped train-split crops) as PNG, 161x96."""
    folder = tmp_path_factory.mktemp("frames")
    for index, path in enumerate(sorted((ROOT / "derain" / "calib" / "reference" / "real" / "rain").glob("*.png"))[:FRAMES]):
        cv2.imwrite(str(folder / f"{index:05d}.png"), cv2.resize(cv2.imread(str(path)), (WIDTH, HEIGHT)))
    return folder


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "realtime.onnx"
    result = run_derain("export", "--height", HEIGHT, "--width", WIDTH, "-o", path)
    assert result.returncode == 0, result.stderr
    return path


def gst_launch(pipeline: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["gst-launch-1.0", "-e", *pipeline.split()], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def test_gst_inspect_finds_the_element_after_eval_env(tmp_path):
    result = subprocess.run(["bash", "-c", 'eval "$(derain gstreamer --env)" && gst-inspect-1.0 derain'],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "GST_REGISTRY": str(tmp_path / "registry.bin")})
    assert result.returncode == 0, result.stderr
    assert "Filter/Effect/Video" in result.stdout and "Traceback" not in result.stderr
    for name in ("backend", "engine", "onnx", "checkpoint", "url", "model", "device", "memory", "cuda-graph", "threads",
                 "max-pixels", "enabled"):
        assert re.search(rf"^  {name} +:", result.stdout, re.MULTILINE), name
    enabled = result.stdout[result.stdout.index("  enabled "):]
    assert "changeable in NULL, READY, PAUSED or PLAYING" in enabled.split("\n  ")[1]
    assert 'String. Default: "auto"' in result.stdout  # backend: the CLI's default


@pytest.mark.parametrize("model", ["bundled checkpoint", "onnx"])
def test_every_frame_equals_derain_run_at_an_odd_width(gst_env, frames, onnx_model, tmp_path, model):
    option = f" onnx={onnx_model}" if model == "onnx" else ""
    out = tmp_path / "gst"
    out.mkdir()
    result = gst_launch(f"multifilesrc location={frames}/%05d.png caps=image/png,framerate=10/1 stop-index={FRAMES - 1} "
                        f"! pngdec ! videoconvert ! video/x-raw,format=RGB ! derain{option} ! videoconvert ! pngenc "
                        f"! multifilesink location={out}/%05d.png", gst_env)
    assert result.returncode == 0, result.stdout + result.stderr
    reference = tmp_path / "run"
    ran = run_derain("run", frames, "-o", reference, *(["--onnx", onnx_model] if model == "onnx" else []))
    assert ran.returncode == 0, ran.stderr
    for index in range(FRAMES):
        name = f"{index:05d}.png"
        element, expected = cv2.imread(str(out / name)), cv2.imread(str(reference / name))
        assert element.shape == (HEIGHT, WIDTH, 3)
        assert _psnr(element, expected) >= 45
        assert _psnr(element, cv2.imread(str(frames / name))) < 45  # it did derain


APPSRC = r"""
import json, sys
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
import numpy as np
Gst.init(None)
width, height, formats = 161, 96, ["RGB", "BGR", "RGBx", "BGRx", "RGBA", "BGRA"]
rng = np.random.default_rng(0)
bgr = [rng.integers(0, 256, (height, width, 3), np.uint8) for _ in range(3)]
ORDER = {"RGB": [2, 1, 0], "BGR": [0, 1, 2], "RGBx": [2, 1, 0], "BGRx": [0, 1, 2], "RGBA": [2, 1, 0], "BGRA": [0, 1, 2]}
FLAGS = [Gst.BufferFlags.DISCONT, Gst.BufferFlags.DELTA_UNIT, Gst.BufferFlags.DELTA_UNIT | Gst.BufferFlags.MARKER]

def packed(image, fmt):
    pixel = 3 if fmt in ("RGB", "BGR") else 4
    stride = (width * pixel + 3) // 4 * 4
    raw = np.full((height, stride), 0xAB, np.uint8)  # padding and 4th bytes: must come back as they went
    raw[:, : width * pixel].reshape(height, width, pixel)[..., ORDER[fmt]] = image
    return raw, pixel

def run(fmt, enabled):
    pipeline = Gst.parse_launch(f"appsrc name=src format=time caps=video/x-raw,format={fmt},width={width},height={height},"
                                f"framerate=10/1 ! derain name=derain enabled={str(enabled).lower()} ! appsink name=sink sync=false")
    src, sink = pipeline.get_by_name("src"), pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    pushed = []
    for index, image in enumerate(bgr):
        raw, pixel = packed(image, fmt)
        buffer = Gst.Buffer.new_wrapped(raw.tobytes())
        buffer.pts, buffer.duration = 1_000_000 + index * 100_000_000, 100_000_000
        buffer.set_flags(FLAGS[index])
        pushed.append(raw)
        src.emit("push-buffer", buffer)
    src.emit("end-of-stream")
    outputs = []
    for index in range(len(bgr)):
        sample = sink.emit("pull-sample")
        buffer = sample.get_buffer()
        ok, info = buffer.map(Gst.MapFlags.READ)
        raw = np.frombuffer(bytes(info.data), np.uint8).reshape(height, -1)
        buffer.unmap(info)
        pixel = 3 if fmt in ("RGB", "BGR") else 4
        image = raw[:, : width * pixel].reshape(height, width, pixel)[..., ORDER[fmt]]
        outputs.append({"pts": buffer.pts, "duration": buffer.duration, "flags": int(buffer.get_flags()) & int(FLAGS[index]),
                        "expected_flags": int(FLAGS[index]), "identical": raw.tobytes() == pushed[index].tobytes(),
                        "rest_kept": bool((raw[:, width * pixel:] == 0xAB).all() and (pixel == 3 or (raw[:, : width * pixel].reshape(height, width, pixel)[..., 3] == 0xAB).all())),
                        "image": image.tolist() if index == 0 else None})
    query = Gst.Query.new_latency()
    latency = sink.get_static_pad("sink").peer_query(query) and query.parse_latency()[1]
    eos = sink.emit("pull-sample") is None and sink.get_property("eos")
    message = pipeline.get_bus().timed_pop_filtered(10 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    return {"frames": outputs, "latency_ns": latency, "eos": eos and message.type == Gst.MessageType.EOS}

print(json.dumps({"input": bgr[0].tolist(), **{f"{fmt} {enabled}": run(fmt, enabled)
                  for fmt in formats for enabled in (True, False)}}))
"""


def test_appsrc_to_appsink_keeps_time_flags_strides_and_every_format(gst_env):
    result = subprocess.run([SYSTEM_PYTHON, "-c", APPSRC], capture_output=True, text=True, env=gst_env, timeout=600)
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    source = np.array(runs.pop("input"), np.uint8)
    derained = None
    for name, run in runs.items():
        enabled = name.endswith("True")
        assert run["eos"], name
        assert [f["pts"] for f in run["frames"]] == [1_000_000 + i * 100_000_000 for i in range(3)], name
        assert all(f["duration"] == 100_000_000 and f["flags"] == f["expected_flags"] for f in run["frames"]), name
        assert all(f["rest_kept"] for f in run["frames"]), name  # row padding and the 4th byte untouched
        image = np.array(run["frames"][0]["image"], np.uint8)
        if not enabled:  # passthrough: byte for byte what went in
            assert all(f["identical"] for f in run["frames"]), name
            continue
        assert not np.array_equal(image, source), name
        derained = image if derained is None else derained
        assert _psnr(image, derained) >= 45, name  # every format gives the same frame
        assert run["latency_ns"] > 0, name  # the measured inference time is in the LATENCY answer


@pytest.mark.parametrize("problem", ["missing", "not onnx"])
def test_a_model_that_cannot_load_stops_the_pipeline_in_one_line(gst_env, frames, tmp_path, problem):
    model = tmp_path / "realtime.onnx"
    if problem == "not onnx":
        model.write_text("not a model")
    result = gst_launch(f"multifilesrc location={frames}/%05d.png caps=image/png,framerate=10/1 stop-index=0 ! pngdec "
                        f"! videoconvert ! derain onnx={model} ! fakesink", gst_env, timeout=120)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    said = run_derain("run", frames / "00000.png", "-o", tmp_path / "out.png", "--onnx", model).stderr.strip().splitlines()
    assert said[-1].startswith(f"derain: error: {model}: ")  # what `derain run` prints ...
    assert f"GstDerain:derain0: {said[-1]}\n" in output  # ... is the element's ERROR, word for word
    assert "Traceback" not in output


def _doc_pipelines() -> list[str]:
    text = (ROOT / "docs" / "gstreamer.md").read_text()
    return [line.strip() for line in re.findall(r"^gst-launch-1\.0 .*$", text, re.MULTILINE)]


def _elements(pipeline: str) -> list[str]:
    stages = [stage.split() for stage in pipeline.removeprefix("gst-launch-1.0").split("!")]
    return [words[0] for words in stages if words and words[0] != "-e" and "/" not in words[0]] + \
           [words[1] for words in stages if words and words[0] == "-e"]


def test_every_documented_pipeline_runs_or_names_real_elements(gst_env, frames, onnx_model, tmp_path):
    pipelines = _doc_pipelines()
    assert len(pipelines) == 3
    available = {name for name in {e for p in pipelines for e in _elements(p)} - JETSON_ELEMENTS
                 if subprocess.run(["gst-inspect-1.0", name], capture_output=True, env=gst_env).returncode == 0}
    for pipeline in pipelines:  # the Jetson line can only be checked for its element names here
        assert set(_elements(pipeline)) <= available | JETSON_ELEMENTS, pipeline
    png, desktop, jetson = pipelines
    assert JETSON_ELEMENTS <= set(_elements(jetson))

    (tmp_path / "frames").symlink_to(frames)
    (tmp_path / "derained").mkdir()
    run = subprocess.run(["bash", "-c", png.replace("caps=", f"stop-index={FRAMES - 1} caps=")], cwd=tmp_path,
                         capture_output=True, text=True, env=gst_env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert len(list((tmp_path / "derained").glob("*.png"))) == FRAMES

    from test_rtsp import SERVER, _free_port  # the RTSP camera of the RTSP tests

    port = _free_port()
    camera = subprocess.Popen([SYSTEM_PYTHON, "-c", SERVER, str(port), "play", ""], stdout=subprocess.PIPE, text=True,
                              env=gst_env)
    try:
        assert camera.stdout.readline().strip() == "ready"
        # The camera's 160x120 frames through the 161x96 model (tiles), 20 frames, then EOS.
        line = desktop.replace("rtsp://127.0.0.1:8554/camera", f"rtsp://127.0.0.1:{port}/test").replace(
            "realtime.onnx", str(onnx_model)).replace("! decodebin !", "! decodebin ! identity eos-after=20 !")
        recorder = subprocess.Popen(["bash", "-c", line], cwd=tmp_path, env=gst_env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        try:
            _, errors = recorder.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            recorder.send_signal(signal.SIGINT)
            _, errors = recorder.communicate(timeout=60)
        assert recorder.returncode == 0, errors
    finally:
        camera.terminate()
        camera.wait(timeout=20)
    video = cv2.VideoCapture(str(tmp_path / "derained.mp4"))
    count = 0
    while video.read()[0]:
        count += 1
    assert count >= 15


def test_a_frame_that_fails_stops_the_pipeline_with_an_error_not_a_traceback(gst_env, frames, tmp_path):
    """A model that runs but gives the wrong shape: the failure while processing is an element ERROR."""
    from onnx import TensorProto, helper, save

    x = helper.make_tensor_value_info("rainy", TensorProto.FLOAT, [1, 3, HEIGHT, WIDTH])
    y = helper.make_tensor_value_info("derained", TensorProto.FLOAT, [1, 3, HEIGHT - 1, WIDTH])
    starts, ends, axes = (helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("s", 1), ("e", 1 << 30), ("a", 2)))
    graph = helper.make_graph([helper.make_node("Slice", ["rainy", "s", "e", "a"], ["derained"])], "short", [x], [y],
                              initializer=[starts, ends, axes])
    model = tmp_path / "short.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    result = gst_launch(f"multifilesrc location={frames}/%05d.png caps=image/png,framerate=10/1 stop-index=0 ! pngdec "
                        f"! videoconvert ! derain onnx={model} ! fakesink", gst_env, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    error = re.search(r"ERROR: from element /GstPipeline:pipeline0/GstDerain:derain0: (derain: error: .+)", output)
    assert error and "shape" in error.group(1), output  # raised by the frame, not by loading the model
    assert "Traceback" not in output
