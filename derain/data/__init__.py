"""Paired data, image/video I/O, synthetic rain and PSNR/SSIM."""
