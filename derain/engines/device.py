"""Which GPU and TensorRT this is: engines are only valid for the GPU (compute capability) and
TensorRT version that built them."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from ..errors import DerainError


@dataclass(frozen=True)
class DeviceInfo:
    gpu: str  # e.g. "Orin" or "NVIDIA H100 80GB HBM3"
    compute_capability: str  # e.g. "8.7"
    tensorrt: str  # e.g. "10.3.0"

    @property
    def slug(self) -> str:
        """Folder name in the engine store (and its timing cache), e.g. orin-sm87-trt10.3.0."""
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu.lower()).strip("-")
        return f"{gpu}-sm{self.compute_capability.replace('.', '')}-trt{self.tensorrt}"

    def mismatch(self, other: "DeviceInfo") -> str | None:
        """What differs in a way that makes an engine built on `other` unusable here, or None.
        TensorRT: "engines are compatible only with the version of TensorRT used to build them"
        (Engine Compatibility, TensorRT 10 and 11 docs), patch releases included."""
        if self.compute_capability != other.compute_capability or self.gpu != other.gpu:
            return f"GPU {other.gpu} (sm {other.compute_capability}), this is {self.gpu} (sm {self.compute_capability})"
        if self.tensorrt != other.tensorrt:
            return f"TensorRT {other.tensorrt}, this is TensorRT {self.tensorrt}"
        return None

    def to_dict(self) -> dict:
        return asdict(self)


def _cuda_python() -> tuple[str, str]:
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
    return properties.name.decode().strip("\x00"), f"{properties.major}.{properties.minor}"


def _pycuda() -> tuple[str, str]:
    import pycuda.driver as driver

    try:
        driver.init()
        device = driver.Device(0)
    except driver.Error as error:
        raise RuntimeError(f"pycuda: {error}") from error
    major, minor = device.compute_capability()
    return device.name(), f"{major}.{minor}"


def _gpu_name_and_capability() -> tuple[str, str]:
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


def current_device() -> DeviceInfo:
    """This machine's GPU 0 and TensorRT, or a one-line error saying which is missing."""
    missing = DerainError("TensorRT is not installed here (JetPack ships it; on a desktop pip install 'derain[tensorrt]')")
    try:
        import tensorrt
    except ImportError:
        raise missing from None
    if not hasattr(tensorrt, "__version__"):  # only type stubs (tensorrt-stubs) are installed
        raise missing
    gpu, capability = _gpu_name_and_capability()
    return DeviceInfo(gpu=gpu, compute_capability=capability, tensorrt=tensorrt.__version__)
