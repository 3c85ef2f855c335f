"""Model configurations as data.

What the paper says and what we reconstructed is in docs/model.md; every reconstructed choice is a
field here, marked (R), rather than a constant buried in a module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

BlockKind = Literal["stb", "mab", "nab"]
StageKind = Literal["stb", "mab", "nab", "conv"]


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
    decoder_block: BlockKind = "nab"  # also the bottleneck's and the refinement's (stage 2)
    bottleneck_block: BlockKind = "nab"
    conv_levels: int = 0  # the finest levels built of plain residual convolutions instead (realtime)
    resample_kernel: int = 3  # kernel of the conv before PixelUnshuffle/PixelShuffle
    sub_buckets: int = 1  # NAB sort key: cluster x this many similarity bands (1: cluster only)
    mask_kernel: int = 7  # structuring element of the morphological top-hat (R)
    mask_line: int = 9  # vertical line of the opening that keeps streak-shaped responses (R)
    mask_line_width: int = 5  # ... on the response widened this much, so slanted streaks pass (R)
    mask_threshold_std: float = 0.0  # streak threshold = mean + a * std of the response (R)
    mask_threshold_floor: float = 0.08  # ... + floor, so flat images give an empty mask (R)
    mask_softness: float = 0.01  # sigmoid temperature of the soft mask (R)

    def __post_init__(self) -> None:
        levels = len(self.encoder_blocks)
        if len(self.decoder_blocks) != levels or len(self.heads) != levels + 1:
            raise ValueError(f"config {self.name!r}: need {levels} decoder levels and {levels + 1} heads")

    @property
    def levels(self) -> int:
        return len(self.encoder_blocks)

    def stage_kind(self, part: Literal["encoder", "decoder"], level: int) -> StageKind:
        """What level `level` (0 = full resolution) of the encoder or decoder is built of."""
        if level < self.conv_levels:
            return "conv"
        return self.encoder_block if part == "encoder" else self.decoder_block

    @property
    def size_multiple(self) -> int:
        """Inputs are padded to this multiple so that every level but the bottleneck tiles into whole
        windows; the bottleneck pads its own map (blocks.Stage). For 8 x 8 windows below three
        halvings that is 32, not 64: 720 rows run as 736, not 768 (4% of every level's work)."""
        return self.window * 2 ** (self.levels - 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        tuples = ("encoder_blocks", "decoder_blocks", "heads")
        return cls(**{k: tuple(v) if k in tuples else v for k, v in data.items()})

    def with_blocks(self, encoder: BlockKind, decoder: BlockKind, name: str | None = None) -> "ModelConfig":
        """The ablations of the paper's Table 2 (e.g. STB/STB, MAB/STB): stage 1 (the encoder) is
        built of `encoder` blocks; stage 2 (bottleneck, decoder and refinement) of `decoder` blocks."""
        return replace(self, name=name or f"{self.name}-{encoder}-{decoder}", encoder_block=encoder,
                       decoder_block=decoder, bottleneck_block=decoder)


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
    # Jetson Orin NX/Nano at 720p and 30 FPS: <= 40 GFLOPs per 1280x720 frame (docs/design.md: what
    # fraction of an Orin's peak a graph like this reaches). Plain convolutions at full and half resolution, where attention and the NAB
    # sort would cost 16x and 4x what they cost at 1/4; the paper's dual stage (MAB encoder, NAB
    # decoder) at 1/4 and 1/8; residual conv blocks at 1/2 and 1/4 of the decoder, where detail is
    # rebuilt. 1x1 convs around the pixel (un)shuffles; channels 16-128. 39 GFLOPs at 720p.
    "realtime": ModelConfig(
        name="realtime", channels=16, encoder_blocks=(0, 0, 1), bottleneck_blocks=1,
        decoder_blocks=(1, 1, 0), refine_blocks=0, heads=(1, 1, 2, 4), window=8, clusters=8,
        ffn_expansion=1.5, conv_levels=2, resample_kernel=1, sub_buckets=4,
    ),
    # For tests: every block kind, two levels, seconds on a CPU.
    "tiny": ModelConfig(
        name="tiny", channels=8, encoder_blocks=(1, 1), bottleneck_blocks=1,
        decoder_blocks=(1, 1), refine_blocks=1, heads=(1, 1, 2), window=4, clusters=4,
    ),
}


# Table 2 of the paper: encoder / decoder blocks of models 1-5; "paper" is the full model (MAB/NAB).
TABLE2 = {"paper-m1": ("stb", "stb"), "paper-m2": ("mab", "mab"), "paper-m3": ("nab", "nab"),
          "paper-m4": ("mab", "stb"), "paper-m5": ("stb", "nab")}
CONFIGS.update({name: CONFIGS["paper"].with_blocks(enc, dec, name) for name, (enc, dec) in TABLE2.items()})


def get_config(name: str) -> ModelConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown model config {name!r} (choose from {', '.join(CONFIGS)})") from None
