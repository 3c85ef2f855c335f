"""Calibration frames and INT8 Q/DQ quantization."""
