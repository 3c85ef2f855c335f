"""Training loop and PSNR/SSIM evaluation."""

from .evaluate import evaluate
from .loop import TrainSettings, train

__all__ = ["TrainSettings", "evaluate", "train"]
