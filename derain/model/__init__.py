"""The dual-stage deraining network (MAB encoder, NAB decoder)."""

from .checkpoint import bundled_checkpoint_path, load_checkpoint, save_checkpoint
from .config import CONFIGS, ModelConfig, get_config
from .network import DerainNet, build_model

__all__ = [
    "CONFIGS", "DerainNet", "ModelConfig", "build_model", "bundled_checkpoint_path", "get_config",
    "load_checkpoint", "save_checkpoint",
]
