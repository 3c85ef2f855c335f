"""derain: a dual-stage deraining transformer, from PyTorch to TensorRT and real-time video."""

__version__ = "0.1.0"
