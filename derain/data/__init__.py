"""Paired data, image/video I/O, synthetic rain and PSNR/SSIM."""

# Above this many pixels an image is refused before it is decoded (here, not in io.py: the command
# line reads it without importing OpenCV). As float32 RGB, the form the network reads, 150 MP is
# 1.8 GB; a 24 MP phone photo is 0.3 GB, and the runtime tiles large frames.
DEFAULT_MAX_IMAGE_PIXELS = 150_000_000
