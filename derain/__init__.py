"""derain: a dual-stage deraining transformer, from PyTorch to TensorRT and real-time video."""

import os

# We report unreadable inputs ourselves, in one line; FFmpeg inside OpenCV would otherwise print its
# own complaints first. Must be set before cv2 is imported; a user's own setting wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

__version__ = "0.1.0"
