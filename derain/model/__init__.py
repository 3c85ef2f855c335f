"""The dual-stage deraining network (MAB encoder, NAB decoder).

Configs import without torch; the network and checkpoints load torch on first use, so that the
runtime (TensorRT or ONNX Runtime on a Jetson) never imports it."""

from importlib import import_module

from .config import CONFIGS, ModelConfig, get_config

_LAZY = {
    "DerainNet": ".network", "build_model": ".network",
    "bundled_checkpoint_path": ".checkpoint", "load_checkpoint": ".checkpoint", "save_checkpoint": ".checkpoint",
}

__all__ = ["CONFIGS", "ModelConfig", "get_config", *_LAZY]


def __getattr__(name: str):  # noqa: ANN202 - PEP 562 lazy attributes
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
