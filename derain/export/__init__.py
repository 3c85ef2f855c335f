"""PyTorch -> ONNX, export checks, FP16 ONNX and the TensorRT compatibility lint."""
