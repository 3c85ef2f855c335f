"""PSNR and SSIM on the Y channel of YCbCr, the protocol of the deraining papers (Restormer,
DRSformer): MATLAB's rgb2ycbcr luma on the 0-255 scale, SSIM with an 11x11 Gaussian window of
sigma 1.5 (Wang et al. 2004), as in BasicSR's calculate_psnr/calculate_ssim with test_y_channel."""

from __future__ import annotations

import cv2
import numpy as np


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """float RGB in [0, 1] -> Y in [16, 235] as float64 (MATLAB rgb2ycbcr)."""
    rgb = np.clip(rgb.astype(np.float64), 0.0, 1.0)
    return 16.0 + rgb @ np.array([65.481, 128.553, 24.966])


def psnr_y(prediction: np.ndarray, target: np.ndarray) -> float:
    mse = np.mean((rgb_to_y(prediction) - rgb_to_y(target)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def ssim_y(prediction: np.ndarray, target: np.ndarray) -> float:
    x, y = rgb_to_y(prediction), rgb_to_y(target)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(a, (11, 11), 1.5)[5:-5, 5:-5]  # 'valid' region only

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())
