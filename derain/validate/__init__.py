"""Accuracy checks: PSNR loss of lower precisions vs FP32, with Polygraphy comparisons."""
