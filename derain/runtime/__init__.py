"""Inference backends (TensorRT, ONNX Runtime, torch), tiling, and the streaming pipeline."""
