"""Training loop and PSNR/SSIM evaluation."""

from .loop import TrainSettings, evaluate, train

__all__ = ["TrainSettings", "evaluate", "train"]
