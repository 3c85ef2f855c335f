"""Real-time streams, one or many on one device: a capture thread per source -> one batcher ->
one inference call per batch -> a sink thread per stream.

Batches form as DeepStream's nvstreammux forms them: frames are taken from the sources in turn,
and a batch leaves when it holds the engine's batch size or `batch_timeout` after its first frame
arrived, whichever comes first; each result goes to its own stream's sink, in order. Without
`realtime`, every frame is processed (a capture waits while its queue is full). With it, each
source drops its own oldest queued frame when inference falls behind, and file or folder sources
are paced at their frame rate, as a camera would be. A backend that loses its remote server
raises BackendUnavailable: that batch is dropped and counted, and inference retries with backoff
while capture goes on. The first Ctrl-C stops capture and lets what is in flight reach the sinks,
which then close (a video file is finalized and plays); a second one aborts."""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..errors import DerainError
from .backend import Backend, BackendUnavailable
from .sinks import SinkSpec
from .sources import Source, SourceSpec

_END = None  # the sentinel that closes a queue
BACKOFF_S = (0.5, 8.0)  # first and longest wait before inference is retried on a lost server


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


@dataclass
class MultiStreamStats:
    """Per stream, and in total: frames summed over the streams, fps the total throughput."""

    streams: list[StreamStats]
    uris: list[tuple[str, str]]  # (source, sink) of each stream
    batches: list[int] = field(default_factory=list)  # frames per inference call
    unavailable_s: float = 0.0  # time the backend's server was away
    reconnects: int = 0  # times it came back

    @property
    def total(self) -> StreamStats:
        every = self.streams
        total = StreamStats(sum(s.frames_in for s in every), sum(s.frames_out for s in every),
                            sum(s.dropped for s in every), any(s.interrupted for s in every),
                            min(s.started for s in every), max((s.ended or time.perf_counter()) for s in every),
                            [t for s in every for t in s.latency])
        total.stages = {name: [t for s in every for t in s.stages[name]] for name in total.stages}
        return total

    def status_line(self) -> str:
        batch = f" | batch {np.mean(self.batches):.1f}" if len(self.streams) > 1 and self.batches else ""
        return self.total.status_line() + batch

    def summary(self) -> dict:
        """The totals at the top (what a single stream's summary always held), then each stream."""
        summary = self.total.summary()
        summary["batch"] = {"calls": len(self.batches), "mean": round(float(np.mean(self.batches)), 2) if self.batches
                            else 0.0, "max": max(self.batches, default=0)}
        summary["unavailable_s"] = round(self.unavailable_s, 2)
        summary["reconnects"] = self.reconnects
        if len(self.streams) > 1:
            summary["streams"] = [{"source": source, "sink": sink, **stats.summary()}
                                  for (source, sink), stats in zip(self.uris, self.streams)]
        return summary


class _Stream:
    """One camera's part: its source, its queue of captured frames, its sink's queue, its stats."""

    def __init__(self, source: Source, sink: SinkSpec, queue_size: int) -> None:
        self.source, self.sink = source, sink
        self.pending: deque[tuple[float, np.ndarray]] = deque()  # (capture time, frame), guarded by the batcher's lock
        self.outputs: queue.Queue = queue.Queue(maxsize=queue_size)
        self.capturing = True
        self.stats = StreamStats()


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
    """One camera: `run_streams` with one source and one sink."""
    return run_streams([source_uri], [sink_uri], backend, realtime, queue_size, status).streams[0]


def run_streams(source_uris: list[str], sink_uris: list[str], backend: Backend, realtime: bool = False,
                queue_size: int = 4, status: bool = True, batch_timeout: float = 0.02) -> MultiStreamStats:
    """Frames of every source through one backend in batches of up to its batch size (the
    engine's N; one per stream for a backend that takes any size)."""
    if len(source_uris) != len(sink_uris):
        raise DerainError(f"--source given {len(source_uris)} times, --sink {len(sink_uris)}: one sink per source")
    sink_specs = [SinkSpec.parse(uri) for uri in sink_uris]  # refused before any source opens
    specs = [SourceSpec.parse(uri) for uri in source_uris]
    streams: list[_Stream] = []
    try:
        for spec, sink in zip(specs, sink_specs):
            streams.append(_Stream(spec.open(), sink, queue_size))
    except BaseException:
        for stream in streams:
            stream.source.close()
        raise
    stats = MultiStreamStats([s.stats for s in streams], list(zip(source_uris, sink_uris)))
    size = backend.input_shape[0] if backend.input_shape else len(streams)
    arrived = threading.Condition()  # a frame was queued, taken, or a capture ended
    stop = threading.Event()
    errors: list[BaseException] = []

    def capture(stream: _Stream) -> None:
        source, counts = stream.source, stream.stats
        period = 1.0 / source.fps if realtime and not source.live else 0.0
        due = time.perf_counter()
        try:
            while not stop.is_set():
                started = time.perf_counter()
                frame = source.read()
                if frame is None:
                    break
                counts.stages["capture"].append(time.perf_counter() - started)
                counts.frames_in += 1
                with arrived:
                    if realtime and len(stream.pending) >= queue_size:
                        stream.pending.popleft()  # this source's oldest frame
                        counts.dropped += 1
                    while not realtime and len(stream.pending) >= queue_size and not stop.is_set():
                        arrived.wait(0.1)
                    stream.pending.append((time.perf_counter(), frame))
                    arrived.notify_all()
                if period:
                    due += period
                    time.sleep(max(0.0, due - time.perf_counter()))
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            with arrived:
                stream.capturing = False
                arrived.notify_all()

    def next_batch() -> list[tuple[_Stream, float, np.ndarray]]:
        """Up to `size` frames, taken from the sources in turn; empty when every source has ended."""
        batch: list[tuple[_Stream, float, np.ndarray]] = []
        deadline = None
        with arrived:
            while True:
                taken = True
                while taken and len(batch) < size:
                    taken = False
                    for stream in streams:
                        if stream.pending and len(batch) < size:
                            batch.append((stream, *stream.pending.popleft()))
                            taken = True
                arrived.notify_all()  # captures waiting for room
                live = any(s.capturing for s in streams)
                if len(batch) == size or not live:
                    return batch
                now = time.perf_counter()
                if batch and deadline is None:
                    deadline = now + batch_timeout
                if deadline is not None and now >= deadline:
                    return batch
                arrived.wait(0.1 if deadline is None else deadline - now)

    def write(stream: _Stream) -> None:
        sink, counts = None, stream.stats
        try:
            while (item := stream.outputs.get()) is not _END:
                captured, frame = item
                if sink is None:
                    sink = stream.sink.open(stream.source.fps, (frame.shape[1], frame.shape[0]))
                started = time.perf_counter()
                sink.write(frame)
                now = time.perf_counter()
                counts.stages["write"].append(now - started)
                counts.latency.append(now - captured)
                counts.frames_out += 1
        except BaseException as error:
            errors.append(error)
            stop.set()
            while stream.outputs.get() is not _END:  # keep the batcher unblocked until it ends
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
        for counts in stats.streams:
            counts.interrupted = True
        stop.set()

    previous = signal.signal(signal.SIGINT, on_interrupt) if threading.current_thread() is threading.main_thread() \
        else None
    captures = [threading.Thread(target=capture, args=(s,), name=f"capture-{i}", daemon=True)
                for i, s in enumerate(streams)]
    writers = [threading.Thread(target=write, args=(s,), name=f"sink-{i}", daemon=True) for i, s in enumerate(streams)]
    for thread in captures + writers:
        thread.start()
    shown, backoff, away_since = 0.0, BACKOFF_S[0], None
    try:
        while batch := next_batch():
            started = time.perf_counter()
            try:
                outputs = backend.infer([frame for _, _, frame in batch])
            except BackendUnavailable as error:  # the frames are lost; the cameras go on
                for stream, _, _ in batch:
                    stream.stats.dropped += 1
                if away_since is None:
                    away_since = started
                    print(f"\nderain: warning: {error}; retrying with backoff, dropping frames meanwhile",
                          file=sys.stderr, flush=True)
                stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_S[1])
                continue
            if away_since is not None:
                stats.unavailable_s += started - away_since
                stats.reconnects += 1
                print(f"\nderain: reconnected after {started - away_since:.1f} s", file=sys.stderr, flush=True)
                away_since, backoff = None, BACKOFF_S[0]
            elapsed = time.perf_counter() - started
            stats.batches.append(len(batch))
            for (stream, captured, _), output in zip(batch, outputs):
                stream.stats.stages["infer"].append(elapsed)
                stream.outputs.put((captured, output))
            if status and time.perf_counter() - shown > 0.5:
                shown = time.perf_counter()
                print(f"\r{stats.status_line()}", end="", file=sys.stderr, flush=True)
    finally:
        if away_since is not None:  # the run ended while the server was still away
            stats.unavailable_s += time.perf_counter() - away_since
        stop.set()
        for thread in captures:
            thread.join()
        for stream, thread in zip(streams, writers):
            stream.outputs.put(_END)
            thread.join()
            stream.source.close()
            stream.stats.ended = time.perf_counter()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if status:
            print(f"\r{stats.status_line()}", file=sys.stderr, flush=True)
    if errors:
        raise errors[0]
    return stats
