"""The `derain` GStreamer element: frames through derain's runtime (the backends of `derain run`
and `derain stream`: TensorRT, ONNX Runtime, torch, Triton), in place, at any size and frame rate.

    eval "$(derain gstreamer --env)"
    gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! videoconvert ! derain onnx=m.onnx ! videoconvert ! ...

Written for GStreamer 1.20 (JetPack 6) and newer: GstBase.BaseTransform in place, packed 8-bit
RGB formats (BGR, RGB and their 4-byte forms, which a Jetson's nvvidconv gives cheaply), each row
read and written at its stride (GStreamer pads RGB rows to 4 bytes). The model loads in do_start,
not while properties are set; `enabled=false` is true passthrough (the same buffer, untouched),
changeable while playing. Timestamps, durations and flags stay the buffer's own. QoS is on and the
LATENCY query adds the measured inference time. A model that cannot load, or a frame that fails,
is an element ERROR carrying the one line `derain run` would print; no traceback.
"""

from __future__ import annotations

import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstBase", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, GObject, Gst, GstBase, GstVideo  # noqa: E402

import numpy as np  # noqa: E402

from derain.runtime.backend import DEFAULT_MAX_PIXELS  # noqa: E402 - light: no inference library is imported
from derain.runtime.factory import BACKENDS  # noqa: E402

Gst.init(None)

# The first three bytes of each pixel, in the BGR order the runtime takes (the 4th is left as it is).
BGR_ORDER = {GstVideo.VideoFormat.BGR: [0, 1, 2], GstVideo.VideoFormat.BGRX: [0, 1, 2], GstVideo.VideoFormat.BGRA: [0, 1, 2],
             GstVideo.VideoFormat.RGB: [2, 1, 0], GstVideo.VideoFormat.RGBX: [2, 1, 0], GstVideo.VideoFormat.RGBA: [2, 1, 0]}
CAPS = Gst.Caps.from_string("video/x-raw,format={ RGB, BGR, RGBx, BGRx, RGBA, BGRA },"
                            "width=[1,2147483647],height=[1,2147483647],framerate=[0/1,2147483647/1]")
LATENCY_SMOOTHING = 0.1  # weight of the newest frame in the inference-time average the LATENCY query reports
RW = GObject.ParamFlags.READWRITE


def _text(name: str, blurb: str, default: str | None) -> tuple:
    return (str, name, blurb, default, RW)


class Derain(GstBase.BaseTransform):
    __gtype_name__ = "GstDerain"  # elements are named derain0, derain1, ...
    __gstmetadata__ = ("derain", "Filter/Effect/Video",
                       "Removes rain from video frames with derain's runtime (TensorRT, ONNX Runtime, torch or Triton)",
                       "derain")
    __gsttemplates__ = (Gst.PadTemplate.new("src", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS, CAPS),
                        Gst.PadTemplate.new("sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS, CAPS))
    # The options of `derain run` / `derain stream`, same names, same defaults.
    __gproperties__ = PROPERTIES = {
        "backend": _text("backend", f"{', '.join(BACKENDS)}; auto: the engine if given, else the ONNX, else a "
                                    "Triton server at url, else torch", "auto"),
        "engine": _text("engine", "TensorRT engine (from `derain build`)", None),
        "onnx": _text("onnx", "ONNX model for ONNX Runtime (from `derain export`)", None),
        "checkpoint": _text("checkpoint", "for the torch backend (default: the bundled one)", None),
        "url": _text("url", "Triton server, grpc://host:8001 (from `derain triton`)", None),
        "model": _text("model", "the Triton model to call", "derain"),
        "device": _text("device", "torch device", "cpu"),
        "memory": _text("memory", "TensorRT device memory: auto, cuda-python or pycuda", "auto"),
        "cuda-graph": (bool, "cuda-graph", "TensorRT: capture the enqueue as a CUDA graph", False, RW),
        "threads": (int, "threads", "CPU threads for torch and ONNX Runtime (0: their own default)", 0, 1024, 0, RW),
        "max-pixels": (int, "max-pixels", "torch: larger frames run as overlapping tiles of this many pixels",
                       1, GLib.MAXINT, DEFAULT_MAX_PIXELS, RW),
        "enabled": (bool, "enabled", "derain the frames; false: passthrough, the same buffers untouched",
                    True, RW | Gst.PARAM_MUTABLE_PLAYING),
    }

    def __init__(self) -> None:
        super().__init__()
        self.options = {name: spec[-2] for name, spec in self.PROPERTIES.items()}  # PyGObject takes __gproperties__
        self.backend = None
        self.info: GstVideo.VideoInfo | None = None
        self.latency_s = 0.0
        self.set_in_place(True)
        self.set_qos_enabled(True)
        self.get_static_pad("src").add_probe(Gst.PadProbeType.QUERY_UPSTREAM | Gst.PadProbeType.PULL, self._add_latency)

    def do_get_property(self, prop: GObject.ParamSpec) -> object:
        return self.options[prop.name]

    def do_set_property(self, prop: GObject.ParamSpec, value: object) -> None:
        self.options[prop.name] = value
        if prop.name == "enabled":
            self.set_passthrough(not value)

    def _fail(self, error: BaseException) -> None:
        """An element ERROR with the line `derain run` prints (what the bus shows; no traceback)."""
        from derain.errors import DerainError

        text = f"derain: error: {error}" if isinstance(error, DerainError) else f"derain: error: {type(error).__name__}: {error}"
        gerror = GLib.Error.new_literal(Gst.LibraryError.quark(), text, Gst.LibraryError.FAILED)
        self.post_message(Gst.Message.new_error(self, gerror, ""))

    def do_start(self) -> bool:
        from pathlib import Path

        from derain.runtime.factory import open_backend, set_threads

        o = self.options
        try:
            if o["threads"]:
                set_threads(o["threads"])
            paths = {name: Path(o[name]) if o[name] else None for name in ("engine", "onnx", "checkpoint")}
            self.backend = open_backend(o["backend"], device=o["device"], memory=o["memory"], cuda_graph=o["cuda-graph"],
                                        url=o["url"], model=o["model"], max_pixels=o["max-pixels"], **paths)
        except Exception as error:  # noqa: BLE001 - whatever stops the model loading ends the pipeline, in one line
            self._fail(error)
            return False
        return True

    def do_stop(self) -> bool:
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        return True

    def do_set_caps(self, incaps: Gst.Caps, outcaps: Gst.Caps) -> bool:
        self.info = GstVideo.VideoInfo.new_from_caps(incaps)
        return self.info is not None

    def _add_latency(self, pad: Gst.Pad, probe: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        """On the LATENCY query's way back downstream (answered upstream already), add ours. A
        probe, not do_query: PyGObject refuses a do_query override on a BaseTransform as
        ambiguous with Gst.Element's."""
        query = probe.get_query()
        if query.type == Gst.QueryType.LATENCY:
            live, least, most = query.parse_latency()
            added = int(self.latency_s * Gst.SECOND)
            query.set_latency(live, least + added, most if most == Gst.CLOCK_TIME_NONE else most + added)
        return Gst.PadProbeReturn.OK

    def do_transform_ip(self, buffer: Gst.Buffer) -> Gst.FlowReturn:
        if self.is_passthrough():  # enabled=false: not even mapped
            return Gst.FlowReturn.OK
        info = self.info
        ok, mapped = buffer.map(Gst.MapFlags.READ | Gst.MapFlags.WRITE)
        if not ok:
            self._fail(RuntimeError("cannot map the frame for writing"))
            return Gst.FlowReturn.ERROR
        try:
            pixel = info.finfo.pixel_stride[0]
            frame = np.ndarray((info.height, info.width, pixel), np.uint8, buffer=mapped.data, offset=info.offset[0],
                               strides=(info.stride[0], pixel, 1))
            order = BGR_ORDER[info.finfo.format]
            started = time.perf_counter()
            frame[..., order] = self.backend.infer([np.ascontiguousarray(frame[..., order])])[0]
            self._measured(time.perf_counter() - started)
        except Exception as error:  # noqa: BLE001 - one line on the bus, the pipeline stops
            self._fail(error)
            return Gst.FlowReturn.ERROR
        finally:
            buffer.unmap(mapped)
        return Gst.FlowReturn.OK

    def _measured(self, seconds: float) -> None:
        """Average inference time; when it moves by a quarter, the pipeline is told to ask again."""
        previous = self.latency_s
        self.latency_s = seconds if previous == 0 else (1 - LATENCY_SMOOTHING) * previous + LATENCY_SMOOTHING * seconds
        if abs(self.latency_s - previous) > 0.25 * max(previous, 1e-3):
            self.post_message(Gst.Message.new_latency(self))


GObject.type_register(Derain)
__gstelementfactory__ = ("derain", Gst.Rank.NONE, Derain)
