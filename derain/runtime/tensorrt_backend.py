"""TensorRT backend: one engine, pinned host buffers, one CUDA stream, `set_tensor_address` +
`execute_async_v3`, and optionally the whole enqueue captured once as a CUDA graph.

Device memory through cuda-python (`cuda.bindings.runtime`, as NVIDIA's samples do now), or
pycuda when asked for or when it is the one installed. Written against the TensorRT 10.3 / 11
Python API; runs only where TensorRT and a GPU exist (tests marked `tensorrt`)."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..engines.store import check_engine
from ..errors import DerainError
from .backend import Backend


class _CudaPython:
    """The few CUDA runtime calls we need, from cuda-python; every call returns (error, *values)."""

    def __init__(self) -> None:
        from cuda.bindings import runtime

        self.rt = runtime
        self.stream = self._check(runtime.cudaStreamCreate())
        self.graphs: list[Any] = []  # (graph, exec) pairs to destroy
        try:  # int(cuda_obj) is deprecated since cuda-bindings 12.9.1 / 13.0.0
            from cuda.bindings.utils import get_cuda_native_handle
        except ImportError:  # 12.6.1 - 12.9.0: int() is the only way
            self.stream_handle = int(self.stream)
        else:
            self.stream_handle = get_cuda_native_handle(self.stream)

    def _check(self, result: tuple) -> Any:
        error, *values = result
        if error != self.rt.cudaError_t.cudaSuccess:
            _, text = self.rt.cudaGetErrorString(error)
            raise DerainError(f"CUDA error {getattr(error, 'name', error)}: {text.decode(errors='replace')}")
        return values[0] if len(values) == 1 else None

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, int]:
        nbytes = int(np.prod(shape)) * dtype.itemsize
        pointer = int(self._check(self.rt.cudaMallocHost(nbytes)))
        raw = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_uint8)), (nbytes,))
        return raw.view(dtype).reshape(shape), pointer

    def device(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(nbytes)))

    def to_device(self, device: int, host: int, nbytes: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(device, host, nbytes, kind, self.stream))

    def to_host(self, host: int, device: int, nbytes: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(host, device, nbytes, kind, self.stream))

    def synchronize(self) -> None:
        self._check(self.rt.cudaStreamSynchronize(self.stream))

    def handle(self) -> int:
        return self.stream_handle

    def capture(self, enqueue: Any) -> Any | None:
        """Record `enqueue()` on the stream as a CUDA graph and return it instantiated, or None when
        the engine cannot be captured: TensorRT's enqueue may return false under capture (an engine
        with operations capture does not permit), and trtexec then ends the capture, clears the
        error and runs without a graph (samples/common/sampleInference.cpp, release/10.3). A capture
        that another call invalidated (cudaStreamEndCapture's error) is treated the same way.
        Thread-local capture, as trtexec's (samples/common/sampleDevice.h): an unsafe CUDA call
        from another thread (a decoder, a second stream) does not invalidate it."""
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._check(self.rt.cudaStreamBeginCapture(self.stream, mode))
        try:
            enqueue()
            refused = False
        except DerainError:
            refused = True
        error, graph = self.rt.cudaStreamEndCapture(self.stream)  # ends the capture either way
        if refused or error != self.rt.cudaError_t.cudaSuccess:
            if graph is not None:
                self.rt.cudaGraphDestroy(graph)
            self.rt.cudaGetLastError()  # clears the capture's error, so the stream runs on
            return None
        try:
            executable = self._check(self.rt.cudaGraphInstantiate(graph, 0))
        except DerainError:
            self.rt.cudaGraphDestroy(graph)
            self.rt.cudaGetLastError()
            return None
        self.graphs.append((graph, executable))
        return executable

    def launch(self, graph: Any) -> None:
        self._check(self.rt.cudaGraphLaunch(graph, self.stream))

    def elapsed_ms(self, work: Any) -> float:
        """Milliseconds the GPU spends on what `work()` puts on the stream: CUDA events recorded
        before and after it, as trtexec times its GPU compute (samples/common/sampleInference.cpp)."""
        start, end = self._check(self.rt.cudaEventCreate()), self._check(self.rt.cudaEventCreate())
        try:
            self._check(self.rt.cudaEventRecord(start, self.stream))
            work()
            self._check(self.rt.cudaEventRecord(end, self.stream))
            self._check(self.rt.cudaEventSynchronize(end))
            return float(self._check(self.rt.cudaEventElapsedTime(start, end)))
        finally:
            self.rt.cudaEventDestroy(start)
            self.rt.cudaEventDestroy(end)

    def free(self, host: list[int], device: list[int]) -> None:
        for graph, executable in self.graphs:
            self.rt.cudaGraphExecDestroy(executable)
            self.rt.cudaGraphDestroy(graph)
        self.graphs.clear()
        for pointer in host:
            self.rt.cudaFreeHost(pointer)
        for pointer in device:
            self.rt.cudaFree(pointer)
        if self.stream is not None:  # close() may come twice
            self.rt.cudaStreamDestroy(self.stream)
            self.stream = None


class _PyCuda:
    """The same calls through pycuda (no CUDA-graph capture here)."""

    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401 - creates the context
        import pycuda.driver as driver

        self.driver = driver
        self.stream = driver.Stream()
        self._allocations: list[Any] = []

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, int]:
        array = self.driver.pagelocked_empty(shape, dtype)
        return array, array.ctypes.data

    def device(self, nbytes: int) -> int:
        allocation = self.driver.mem_alloc(nbytes)
        self._allocations.append(allocation)
        return int(allocation)

    def to_device(self, device: int, host: int, nbytes: int) -> None:
        self.driver.memcpy_htod_async(device, (ctypes.c_byte * nbytes).from_address(host), self.stream)

    def to_host(self, host: int, device: int, nbytes: int) -> None:
        self.driver.memcpy_dtoh_async((ctypes.c_byte * nbytes).from_address(host), device, self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def handle(self) -> int:
        return int(self.stream.handle)

    def capture(self, enqueue: Any) -> Any:
        raise DerainError("CUDA-graph capture needs cuda-python (pip install cuda-python)")

    def launch(self, graph: Any) -> None:
        raise AssertionError("unreachable: capture refused")

    def elapsed_ms(self, work: Any) -> float:
        start, end = self.driver.Event(), self.driver.Event()
        start.record(self.stream)
        work()
        end.record(self.stream)
        end.synchronize()
        return float(start.time_till(end))

    def free(self, host: list[int], device: list[int]) -> None:
        for allocation in self._allocations:
            allocation.free()


def _cuda_api(memory: str) -> _CudaPython | _PyCuda:
    """memory: "auto" (cuda-python, else pycuda), "cuda-python" or "pycuda". "auto" takes pycuda
    when cuda-python is missing *or fails*, as engines/device.py does: cuda-python 13 imports on
    JetPack 6, then its first call fails on the CUDA 12.6 driver."""
    problems = []
    if memory in ("auto", "cuda-python"):
        try:
            return _CudaPython()
        except ImportError:
            problems.append("cuda-python is not installed")
        except DerainError as error:
            problems.append(f"cuda-python failed ({error})")
        if memory == "cuda-python":
            raise DerainError(f"{problems[0]} (pip install 'cuda-python>=12.6.1,<13' on CUDA 12)")
    try:
        return _PyCuda()
    except ImportError:
        problems.append("pycuda is not installed")
    raise DerainError(f"the TensorRT backend needs cuda-python or pycuda ({'; '.join(problems)}): "
                      "pip install 'derain[tensorrt]', or 'derain[jetson]' on a Jetson")


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, engine_path: str | Path, memory: str = "auto", cuda_graph: bool = False) -> None:
        engine_path = Path(engine_path)
        # First: built for this GPU and TensorRT? (a one-line error, also where TensorRT is absent)
        self.manifest = check_engine(engine_path)
        import tensorrt as trt

        self.cuda = _cuda_api(memory)
        self.buffers: dict[str, tuple[np.ndarray, int, int]] = {}  # name -> (host view, host ptr, device ptr)
        self.hosts: list[int] = []  # every allocation, as soon as it is made: close() frees them
        self.devices: list[int] = []
        try:
            self._open(trt, engine_path, cuda_graph)
        except BaseException:  # what was allocated goes back, whatever failed
            self.close()
            raise

    def _open(self, trt: Any, engine_path: Path, cuda_graph: bool) -> None:
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise DerainError(f"{engine_path}: TensorRT could not deserialize this engine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(index) for index in range(self.engine.num_io_tensors)]
        for name in names:
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT and -1 in tuple(self.engine.get_tensor_shape(name)):
                # A dynamic batch (derain build's profile 1..N): buffers for N, the shape set per run.
                _, _, most = self.engine.get_tensor_profile_shape(name, 0)
                self.context.set_input_shape(name, tuple(most))
                self.dynamic_batch = True
        for name in names:
            dims = self.context.get_tensor_shape(name)  # resolved for the largest batch
            shape = tuple(dims[i] for i in range(len(dims)))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            host, host_pointer = self.cuda.pinned(shape, dtype)
            self.hosts.append(host_pointer)
            device_pointer = self.cuda.device(host.nbytes)
            self.devices.append(device_pointer)
            self.context.set_tensor_address(name, device_pointer)
            self.buffers[name] = (host, host_pointer, device_pointer)
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.input_name, self.input_shape = name, shape
            else:
                self.output_name = name
        self.graph = None
        if cuda_graph:
            self._enqueue()  # TensorRT wants one plain enqueue before capture
            self.cuda.synchronize()
            self.graph = self.cuda.capture(self._enqueue)
            if self.graph is None:
                print(f"derain: warning: {engine_path}: TensorRT cannot enqueue this engine under CUDA-graph "
                      "capture; running it without --cuda-graph", file=sys.stderr)

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.cuda.handle()):
            raise DerainError("TensorRT execute_async_v3 failed")

    def run(self, batch: np.ndarray) -> np.ndarray:
        host_in, host_in_pointer, device_in = self.buffers[self.input_name]
        host_out, host_out_pointer, device_out = self.buffers[self.output_name]
        count = len(batch)  # the engine's N, or 1..N for a dynamic batch
        if self.dynamic_batch:
            self.context.set_input_shape(self.input_name, (count, *host_in.shape[1:]))
        np.copyto(host_in[:count], batch, casting="same_kind")
        self.cuda.to_device(device_in, host_in_pointer, host_in[:count].nbytes)
        self._execute(count)
        self.cuda.to_host(host_out_pointer, device_out, host_out[:count].nbytes)
        self.cuda.synchronize()
        return host_out[:count].astype(np.float32, copy=True)

    def _execute(self, count: int) -> None:
        if self.graph is not None and count == len(self.buffers[self.input_name][0]):  # captured at the largest batch
            self.cuda.launch(self.graph)
        else:
            self._enqueue()

    def device_milliseconds(self, iterations: int) -> list[float]:
        """GPU time of the engine alone (the graph launch with --cuda-graph, else the enqueue) on
        what the last `run` left in the device buffers: no copies, no host work in it."""
        count = self.context.get_tensor_shape(self.input_name)[0]
        return [self.cuda.elapsed_ms(lambda: self._execute(count)) for _ in range(iterations)]

    def close(self) -> None:
        hosts = [] if isinstance(self.cuda, _PyCuda) else self.hosts  # pagelocked arrays free themselves
        self.cuda.free(hosts, self.devices)
        self.buffers.clear()
        self.hosts, self.devices = [], []
