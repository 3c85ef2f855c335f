"""Which GPU and TensorRT this is: engines are only valid for the GPU model and TensorRT version
that built them. Every Jetson Orin module reports the name "Orin" and compute capability 8.7, so
the fingerprint also holds the SM count and the memory: an AGX Orin (14-16 SMs, 32-64 GB), an Orin
NX 16GB (8 SMs, 16 GB) and an Orin Nano 4GB (4 SMs) tell apart; an Orin NX 8GB and an Orin Nano 8GB
(8 SMs, 8 GB each) do not (their GPU clocks differ, which CUDA does not report reliably)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from ..errors import DerainError


@dataclass(frozen=True)
class DeviceInfo:
    gpu: str  # e.g. "Orin" or "NVIDIA H100 80GB HBM3"
    compute_capability: str  # e.g. "8.7"
    tensorrt: str  # e.g. "10.3.0"
    multiprocessors: int = 0  # SM count (cudaDeviceProp.multiProcessorCount); 0: not recorded
    memory_gib: int = 0  # cudaDeviceProp.totalGlobalMem, rounded; on a Jetson the shared system memory

    @property
    def slug(self) -> str:
        """Folder name in the engine store (and its timing cache), e.g. orin-sm87-8sms-16gib-trt10.3.0."""
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu.lower()).strip("-")
        size = f"-{self.multiprocessors}sms-{self.memory_gib}gib" if self.multiprocessors else ""
        return f"{gpu}-sm{self.compute_capability.replace('.', '')}{size}-trt{self.tensorrt}"

    def mismatch(self, other: "DeviceInfo") -> str | None:
        """What differs in a way that makes an engine built on `other` unusable here, or None.
        TensorRT: "engines are compatible only with the version of TensorRT used to build them"
        (Engine Compatibility, TensorRT 10 and 11 docs), patch releases included."""
        if (self.gpu, self.compute_capability, self.multiprocessors, self.memory_gib) != (
                other.gpu, other.compute_capability, other.multiprocessors, other.memory_gib):
            return f"GPU {other.describe()}, this is {self.describe()}"
        if self.tensorrt != other.tensorrt:
            return f"TensorRT {other.tensorrt}, this is TensorRT {self.tensorrt}"
        return None

    def describe(self) -> str:
        size = f", {self.multiprocessors} SMs, {self.memory_gib} GiB" if self.multiprocessors else ""
        return f"{self.gpu} (sm {self.compute_capability}{size})"

    def to_dict(self) -> dict:
        return asdict(self)


GiB = 1 << 30
GpuFacts = tuple[str, str, int, int]  # name, compute capability, SM count, memory in GiB


def _cuda_python() -> GpuFacts:
    from importlib.metadata import PackageNotFoundError, version

    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            found = version("cuda-python")
        except PackageNotFoundError:
            raise ImportError("cuda-python is not installed") from None
        raise ImportError(f"cuda-python {found} has no cuda.bindings (needs >= 12.6.1)") from None
    error, properties = runtime.cudaGetDeviceProperties(0)
    if error != runtime.cudaError_t.cudaSuccess:  # e.g. cuda-python 13 on a CUDA 12 driver
        raise RuntimeError(f"cuda-python: {error.name}")
    return (properties.name.decode().strip("\x00"), f"{properties.major}.{properties.minor}",
            int(properties.multiProcessorCount), round(properties.totalGlobalMem / GiB))


def _pycuda() -> GpuFacts:
    import pycuda.driver as driver

    try:
        driver.init()
        device = driver.Device(0)
    except driver.Error as error:
        raise RuntimeError(f"pycuda: {error}") from error
    major, minor = device.compute_capability()
    multiprocessors = device.get_attribute(driver.device_attribute.MULTIPROCESSOR_COUNT)
    return device.name(), f"{major}.{minor}", int(multiprocessors), round(device.total_memory() / GiB)


def _gpu_facts() -> GpuFacts:
    """GPU 0 through cuda-python (cuda.bindings), else pycuda: each is tried when the other is
    missing *or fails* (cuda-python 13 on JetPack 6's CUDA 12.6 driver imports, then fails)."""
    problems = []
    for probe in (_cuda_python, _pycuda):
        try:
            return probe()
        except (ImportError, RuntimeError) as error:
            problems.append(str(error))
    raise DerainError(f"no usable CUDA GPU here ({'; '.join(problems)}); pip install 'derain[tensorrt]', "
                      "or 'derain[jetson]' on a Jetson")


def require_tensorrt_10(version: str) -> None:
    """derain's engines are strongly typed TensorRT 10+ builds (the 10.3 Python API and up); JetPack
    6.0 ships TensorRT 8.6, JetPack 6.1 and 6.2 ship 10.3."""
    if int(version.split(".")[0]) < 10:
        raise DerainError(f"TensorRT {version} is installed here; derain needs TensorRT 10.3 or newer "
                          "(JetPack 6.1 or 6.2 on a Jetson: JetPack 6.0 ships TensorRT 8.6)")


def current_device() -> DeviceInfo:
    """This machine's GPU 0 and TensorRT, or a one-line error saying which is missing."""
    missing = DerainError("TensorRT is not installed here (JetPack ships it; on a desktop pip install 'derain[tensorrt]')")
    try:
        import tensorrt
    except ImportError:
        raise missing from None
    if not hasattr(tensorrt, "__version__"):  # only type stubs (tensorrt-stubs) are installed
        raise missing
    require_tensorrt_10(tensorrt.__version__)
    gpu, capability, multiprocessors, memory_gib = _gpu_facts()
    return DeviceInfo(gpu, capability, tensorrt.__version__, multiprocessors, memory_gib)
