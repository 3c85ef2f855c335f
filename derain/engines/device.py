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
        """Folder name in the engine store, e.g. orin-sm87-trt10.3."""
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu.lower()).strip("-")
        return f"{gpu}-sm{self.compute_capability.replace('.', '')}-trt{'.'.join(self.tensorrt.split('.')[:2])}"

    def mismatch(self, other: "DeviceInfo") -> str | None:
        """What differs in a way that makes an engine built on `other` unusable here, or None."""
        if self.compute_capability != other.compute_capability or self.gpu != other.gpu:
            return f"GPU {other.gpu} (sm {other.compute_capability}), this is {self.gpu} (sm {self.compute_capability})"
        if self.tensorrt.split(".")[:2] != other.tensorrt.split(".")[:2]:
            return f"TensorRT {other.tensorrt}, this is TensorRT {self.tensorrt}"
        return None

    def to_dict(self) -> dict:
        return asdict(self)


def _gpu_name_and_capability() -> tuple[str, str]:
    """GPU 0 through cuda-python (cuda.bindings), else pycuda."""
    try:
        from cuda.bindings import runtime

        error, properties = runtime.cudaGetDeviceProperties(0)
        if error != runtime.cudaError_t.cudaSuccess:
            raise DerainError(f"no usable CUDA GPU here ({error})")
        return properties.name.decode().strip("\x00"), f"{properties.major}.{properties.minor}"
    except ImportError:
        pass
    try:
        import pycuda.driver as driver

        driver.init()
        device = driver.Device(0)
        major, minor = device.compute_capability()
        return device.name(), f"{major}.{minor}"
    except ImportError:
        raise DerainError("this needs cuda-python or pycuda (pip install 'derain[tensorrt]')") from None


def current_device() -> DeviceInfo:
    """This machine's GPU 0 and TensorRT, or a one-line error saying which is missing."""
    missing = DerainError("TensorRT is not installed here (JetPack ships it; elsewhere pip install tensorrt)")
    try:
        import tensorrt
    except ImportError:
        raise missing from None
    if not hasattr(tensorrt, "__version__"):  # only type stubs (tensorrt-stubs) are installed
        raise missing
    gpu, capability = _gpu_name_and_capability()
    return DeviceInfo(gpu=gpu, compute_capability=capability, tensorrt=tensorrt.__version__)
