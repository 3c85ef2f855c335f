"""Real-time streams: capture thread -> bounded queue -> inference -> bounded queue -> sink thread.

Without `realtime`, every frame is processed (capture waits for inference). With it, the oldest
queued frame is dropped when inference falls behind, and file or folder sources are paced at their
frame rate, as a camera would be. The first Ctrl-C stops capture and lets what is in flight reach
the sink, which then closes (a video file is finalized and plays); a second one aborts."""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .backend import Backend
from .sinks import SinkSpec
from .sources import SourceSpec

_END = None  # the sentinel that closes a queue


@dataclass
class StreamStats:
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    interrupted: bool = False
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None
    latency: list[float] = field(default_factory=list)  # capture to sink, seconds
    stages: dict[str, list[float]] = field(default_factory=lambda: {"capture": [], "infer": [], "write": []})

    @property
    def seconds(self) -> float:
        return (self.ended or time.perf_counter()) - self.started

    @property
    def fps(self) -> float:
        return self.frames_out / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, values: list[float], q: float) -> float:
        return float(np.percentile(values, q) * 1000) if values else 0.0

    def status_line(self) -> str:
        return (f"in {self.frames_in} out {self.frames_out} dropped {self.dropped} | {self.fps:5.1f} fps | "
                f"latency p50 {self.percentile_ms(self.latency, 50):6.1f} ms")

    def summary(self) -> dict:
        return {
            "frames_in": self.frames_in, "frames_out": self.frames_out, "dropped": self.dropped,
            "interrupted": self.interrupted, "seconds": round(self.seconds, 3), "fps": round(self.fps, 2),
            "latency_ms": {"p50": round(self.percentile_ms(self.latency, 50), 2),
                           "p95": round(self.percentile_ms(self.latency, 95), 2)},
            "stage_ms": {name: round(self.percentile_ms(times, 50), 2) for name, times in self.stages.items()},
        }


def _put(target: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Blocking put that gives up when `stop` is set."""
    while not stop.is_set():
        try:
            target.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def run_stream(source_uri: str, sink_uri: str, backend: Backend, realtime: bool = False, queue_size: int = 4,
               status: bool = True) -> StreamStats:
    sink_spec = SinkSpec.parse(sink_uri)  # refused before the source opens
    source = SourceSpec.parse(source_uri).open()
    stats = StreamStats()
    frames: queue.Queue = queue.Queue(maxsize=queue_size)
    outputs: queue.Queue = queue.Queue(maxsize=queue_size)
    stop = threading.Event()
    errors: list[BaseException] = []

    def capture() -> None:
        period = 1.0 / source.fps if realtime and not source.live else 0.0
        due = time.perf_counter()
        try:
            while not stop.is_set():
                started = time.perf_counter()
                frame = source.read()
                if frame is None:
                    break
                stats.stages["capture"].append(time.perf_counter() - started)
                stats.frames_in += 1
                item = (time.perf_counter(), frame)
                if realtime:
                    while True:
                        try:
                            frames.put_nowait(item)
                            break
                        except queue.Full:
                            try:
                                frames.get_nowait()
                                stats.dropped += 1
                            except queue.Empty:
                                pass
                elif not _put(frames, item, stop):
                    break
                if period:
                    due += period
                    time.sleep(max(0.0, due - time.perf_counter()))
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            _put(frames, _END, threading.Event())

    def write() -> None:
        sink = None
        try:
            while (item := outputs.get()) is not _END:
                captured, frame = item
                if sink is None:
                    sink = sink_spec.open(source.fps, (frame.shape[1], frame.shape[0]))
                started = time.perf_counter()
                sink.write(frame)
                now = time.perf_counter()
                stats.stages["write"].append(now - started)
                stats.latency.append(now - captured)
                stats.frames_out += 1
        except BaseException as error:
            errors.append(error)
            stop.set()
            while outputs.get() is not _END:  # keep the producer unblocked until it ends
                pass
        finally:
            if sink is not None:
                try:
                    sink.close()  # may find the file unwritable (a full disk): the run must fail
                except BaseException as error:
                    errors.append(error)

    def on_interrupt(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stats.interrupted = True
        stop.set()

    previous = signal.signal(signal.SIGINT, on_interrupt) if threading.current_thread() is threading.main_thread() \
        else None
    threads = [threading.Thread(target=capture, name="capture", daemon=True),
               threading.Thread(target=write, name="sink", daemon=True)]
    for thread in threads:
        thread.start()
    shown = 0.0
    try:
        while True:
            try:
                item = frames.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                break
            captured, frame = item
            started = time.perf_counter()
            output = backend.infer([frame])[0]
            stats.stages["infer"].append(time.perf_counter() - started)
            outputs.put((captured, output))
            if status and time.perf_counter() - shown > 0.5:
                shown = time.perf_counter()
                print(f"\r{stats.status_line()}", end="", file=sys.stderr, flush=True)
    finally:
        stop.set()
        capturing, writing = threads
        while capturing.is_alive():  # it may wait to queue its end marker: make room
            try:
                frames.get(timeout=0.1)
            except queue.Empty:
                pass
        outputs.put(_END)
        writing.join()
        source.close()
        stats.ended = time.perf_counter()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if status:
            print(f"\r{stats.status_line()}", file=sys.stderr, flush=True)
    if errors:
        raise errors[0]
    return stats
