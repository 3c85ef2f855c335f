"""Model configurations as data.

Sizes follow ../shared/design/MODEL.md. Everything marked (R) there is our reconstruction of the
paper, so each choice is a field here rather than a constant buried in a module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

BlockKind = Literal["stb", "mab", "nab"]


@dataclass(frozen=True)
class ModelConfig:
    name: str
    channels: int  # C at full resolution; level i has C * 2**i
    encoder_blocks: tuple[int, ...]  # blocks per encoder level (stage 1)
    bottleneck_blocks: int
    decoder_blocks: tuple[int, ...]  # blocks per decoder level, coarse to fine (stage 2)
    refine_blocks: int  # full-resolution refinement after the decoder
    heads: tuple[int, ...]  # per level, the last one for the bottleneck
    window: int  # window side w; NAB chunks hold w*w tokens
    clusters: int  # K centroids of the NAB
    ffn_expansion: float = 2.0
    encoder_block: BlockKind = "mab"  # Table 2 of the paper varies these two
    decoder_block: BlockKind = "nab"
    bottleneck_block: BlockKind = "nab"
    mask_kernel: int = 7  # structuring element of the morphological opening (R)
    mask_threshold_std: float = 1.0  # streak threshold = mean + a * std of the top-hat (R)
    mask_threshold_floor: float = 0.03  # ... + floor, so flat images give an empty mask (R)
    mask_softness: float = 0.01  # sigmoid temperature of the soft mask (R)

    def __post_init__(self) -> None:
        levels = len(self.encoder_blocks)
        if len(self.decoder_blocks) != levels or len(self.heads) != levels + 1:
            raise ValueError(f"config {self.name!r}: need {levels} decoder levels and {levels + 1} heads")

    @property
    def levels(self) -> int:
        return len(self.encoder_blocks)

    @property
    def size_multiple(self) -> int:
        """Inputs are padded to this multiple so every level tiles into whole windows."""
        return self.window * 2**self.levels

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        tuples = ("encoder_blocks", "decoder_blocks", "heads")
        return cls(**{k: tuple(v) if k in tuples else v for k, v in data.items()})

    def with_blocks(self, encoder: BlockKind, decoder: BlockKind) -> "ModelConfig":
        """The ablations of the paper's Table 2 (e.g. STB/STB, MAB/STB)."""
        return replace(self, name=f"{self.name}-{encoder}-{decoder}", encoder_block=encoder, decoder_block=decoder)


CONFIGS: dict[str, ModelConfig] = {
    # Restormer-class, the scale of the paper's Table 1.
    "paper": ModelConfig(
        name="paper", channels=48, encoder_blocks=(4, 6, 6), bottleneck_blocks=8,
        decoder_blocks=(6, 6, 4), refine_blocks=4, heads=(1, 2, 4, 8), window=8, clusters=16,
        ffn_expansion=2.66,
    ),
    # Real-time budget on a Jetson Orin (<= 1.5M parameters); C=16 keeps every level a multiple of
    # 16 channels, which FP16/INT8 tensor-core kernels want.
    "edge": ModelConfig(
        name="edge", channels=16, encoder_blocks=(1, 2, 2), bottleneck_blocks=2,
        decoder_blocks=(2, 2, 1), refine_blocks=1, heads=(1, 2, 4, 4), window=8, clusters=8,
    ),
    # For tests: every block kind, two levels, seconds on a CPU.
    "tiny": ModelConfig(
        name="tiny", channels=8, encoder_blocks=(1, 1), bottleneck_blocks=1,
        decoder_blocks=(1, 1), refine_blocks=1, heads=(1, 1, 2), window=4, clusters=4,
    ),
}


def get_config(name: str) -> ModelConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown model config {name!r} (choose from {', '.join(CONFIGS)})") from None
