"""Names every stage agrees on for the exported graph (no torch here: the runtime imports it)."""

INPUT_NAME = "rainy"  # (N, 3, H, W) float32 RGB in [0, 1]
OUTPUT_NAME = "derained"  # same shape; not clamped
OPSET = 20  # the first with Gelu (one op, where opset 17 wrote five); TensorRT 10.3 parses opsets up to 20
# onnxsim: constants folded up to 1 MB (larger ones stay the few ops that make them, and TensorRT
# folds them on the device); fuse_qkv would merge the attention's q, k and v MatMuls back into one
# whose output is then Split, a copy of 3x the feature map that model/attention.py avoids.
SIMPLIFY_OPTIONS = {"tensor_size_threshold": "1MB", "skipped_optimizers": ["fuse_qkv"]}
