"""The TensorRT backend's CUDA calls, against a stand-in for cuda-python's runtime module (no GPU
here): what it does when cuda-python fails, when an engine refuses CUDA-graph capture, and how it
times the engine alone with CUDA events."""

import enum
import sys
import types

import pytest

from derain.errors import DerainError
from derain.runtime import tensorrt_backend

Error = enum.Enum("cudaError_t", {"cudaSuccess": 0, "cudaErrorInsufficientDriver": 35,
                                  "cudaErrorStreamCaptureInvalidated": 901})


class StandInRuntime(types.ModuleType):
    """cuda.bindings.runtime's calls as (error, value) tuples, recording what was called."""

    cudaError_t = Error

    class cudaStreamCaptureMode:
        cudaStreamCaptureModeGlobal, cudaStreamCaptureModeThreadLocal = 0, 1

    def __init__(self, stream_error: Error = Error.cudaSuccess,
                 end_capture: tuple = (Error.cudaErrorStreamCaptureInvalidated, None)) -> None:
        super().__init__("cuda.bindings.runtime")
        self.stream_error, self.end_capture, self.calls, self.arguments = stream_error, end_capture, [], {}

    def __getattr__(self, name: str):
        if not name.startswith("cuda"):
            raise AttributeError(name)
        replies = {"cudaStreamCreate": (self.stream_error, 7), "cudaGetErrorString": (Error.cudaSuccess, b"why"),
                   "cudaStreamEndCapture": self.end_capture, "cudaEventElapsedTime": (Error.cudaSuccess, 2.5),
                   "cudaEventCreate": (Error.cudaSuccess, f"event{self.calls.count('cudaEventCreate')}")}
        return lambda *args: self.calls.append(name) or self.arguments.setdefault(name, []).append(args) or replies.get(
            name, (Error.cudaSuccess,))


@pytest.fixture
def stand_in(monkeypatch):
    def install(runtime: StandInRuntime) -> StandInRuntime:
        bindings = types.ModuleType("cuda.bindings")
        bindings.runtime = runtime
        monkeypatch.setitem(sys.modules, "cuda", types.ModuleType("cuda"))
        monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
        monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", runtime)
        monkeypatch.setitem(sys.modules, "cuda.bindings.utils", None)  # 12.6.1-12.9.0: int(stream)
        monkeypatch.setitem(sys.modules, "pycuda", None)  # not installed
        monkeypatch.setitem(sys.modules, "pycuda.autoinit", None)
        return runtime

    return install


def test_a_failing_cuda_python_falls_back_to_pycuda_and_names_both(stand_in):
    stand_in(StandInRuntime(stream_error=Error.cudaErrorInsufficientDriver))  # cuda-python 13 on a CUDA 12 driver
    with pytest.raises(DerainError) as error:
        tensorrt_backend._cuda_api("auto")
    message = str(error.value)
    assert "cuda-python failed (CUDA error cudaErrorInsufficientDriver: why)" in message
    assert "pycuda is not installed" in message  # it was tried, not skipped
    with pytest.raises(DerainError, match="cudaErrorInsufficientDriver"):
        tensorrt_backend._cuda_api("cuda-python")


def test_an_engine_that_refuses_capture_ends_it_and_runs_without_a_graph(stand_in):
    runtime = stand_in(StandInRuntime())
    cuda = tensorrt_backend._CudaPython()

    def enqueue() -> None:  # execute_async_v3 returned False under capture
        raise DerainError("TensorRT execute_async_v3 failed")

    assert cuda.capture(enqueue) is None and cuda.graphs == []
    assert runtime.calls[-3:] == ["cudaStreamBeginCapture", "cudaStreamEndCapture", "cudaGetLastError"]


def test_a_capture_another_call_invalidated_runs_without_a_graph_too(stand_in):
    """The enqueue went through, but cudaStreamEndCapture reports the capture invalidated (review 3,
    E8): no graph, the error cleared, the stream runs on; the capture is thread-local, as trtexec's."""
    runtime = stand_in(StandInRuntime(end_capture=(Error.cudaErrorStreamCaptureInvalidated, "graph")))
    cuda = tensorrt_backend._CudaPython()
    assert cuda.capture(lambda: None) is None and cuda.graphs == []
    assert runtime.calls[-4:] == ["cudaStreamBeginCapture", "cudaStreamEndCapture", "cudaGraphDestroy", "cudaGetLastError"]
    assert runtime.arguments["cudaStreamBeginCapture"][0][1] == runtime.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal


def test_closing_twice_destroys_the_stream_once(stand_in):
    runtime = stand_in(StandInRuntime())
    cuda = tensorrt_backend._CudaPython()
    cuda.free([], [])
    cuda.free([], [])
    assert runtime.calls.count("cudaStreamDestroy") == 1


def test_cuda_events_time_what_is_put_on_the_stream_between_them(stand_in):
    """trtexec's GPU Compute Time: an event recorded on the backend's stream before and after the
    work, the end waited for, the time between them read, both events destroyed."""
    runtime = stand_in(StandInRuntime())
    cuda = tensorrt_backend._CudaPython()
    before = len(runtime.calls)
    assert cuda.elapsed_ms(lambda: runtime.calls.append("work")) == 2.5
    assert runtime.calls[before:] == ["cudaEventCreate", "cudaEventCreate", "cudaEventRecord", "work", "cudaEventRecord",
                                      "cudaEventSynchronize", "cudaEventElapsedTime", "cudaEventDestroy", "cudaEventDestroy"]
    assert runtime.arguments["cudaEventRecord"] == [("event0", 7), ("event1", 7)]  # start, end; on our stream
    assert runtime.arguments["cudaEventElapsedTime"] == [("event0", "event1")]


def test_events_go_back_when_the_timed_work_fails(stand_in):
    runtime = stand_in(StandInRuntime())
    cuda = tensorrt_backend._CudaPython()

    def enqueue() -> None:
        raise DerainError("TensorRT execute_async_v3 failed")

    with pytest.raises(DerainError, match="execute_async_v3"):
        cuda.elapsed_ms(enqueue)
    assert runtime.calls.count("cudaEventDestroy") == 2 and "cudaEventElapsedTime" not in runtime.calls


class StandInContext:
    """The two calls of TensorRT's IExecutionContext that timing makes."""

    def __init__(self, batch: int) -> None:
        self.batch, self.enqueued = batch, 0

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (self.batch, 3, 8, 8)

    def execute_async_v3(self, stream: int) -> bool:
        self.enqueued += 1
        return True


@pytest.mark.parametrize(("captured", "batch", "launches"), [(True, 2, 3), (True, 1, 0), (False, 2, 0)])
def test_device_time_is_the_graph_launch_when_there_is_a_graph(stand_in, captured, batch, launches):
    """With --cuda-graph the timed work is the graph launch (captured at the largest batch); at a
    smaller batch of a dynamic engine, and without a graph, it is the enqueue."""
    runtime = stand_in(StandInRuntime())
    backend = object.__new__(tensorrt_backend.TensorRTBackend)
    backend.cuda, backend.context, backend.input_name = tensorrt_backend._CudaPython(), StandInContext(batch), "image"
    backend.buffers = {"image": (tensorrt_backend.np.zeros((2, 3, 8, 8), "float32"), 0, 0)}
    backend.graph = "graph-exec" if captured else None
    assert backend.device_milliseconds(3) == [2.5, 2.5, 2.5]
    assert runtime.calls.count("cudaGraphLaunch") == launches
    assert backend.context.enqueued == 3 - launches
    assert all(args == ("graph-exec", 7) for args in runtime.arguments.get("cudaGraphLaunch", []))
