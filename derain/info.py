"""Model size and cost: parameters, and GFLOPs counted by torch.utils.flop_counter."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .model import CONFIGS, ModelConfig, build_model

SIZES = ((256, 256), (720, 1280))  # (H, W)


def count_flops(name: "str | ModelConfig", height: int, width: int) -> int:
    """FLOPs (2 per multiply-accumulate of matmuls and convolutions) of one forward pass of the
    exported graph (the NAB's counting sort and its prefix-sum MatMuls included), on the meta
    device: shapes only, no memory or compute, so even `paper` at 720p takes a second."""
    with torch.device("meta"), torch.no_grad():
        model = build_model(name)
        with model.export_mode(), FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 3, height, width))
    return counter.get_total_flops()


def model_info(name: str) -> dict:
    with torch.device("meta"):
        params = sum(p.numel() for p in build_model(name).parameters())
    config = CONFIGS[name]
    return {
        "model": name,
        "params": params,
        "params_m": round(params / 1e6, 3),
        "gflops": {f"{w}x{h}": round(count_flops(name, h, w) / 1e9, 2) for h, w in SIZES},
        "pad_multiple": config.size_multiple,
        "encoder_block": config.encoder_block,
        "decoder_block": config.decoder_block,
    }
