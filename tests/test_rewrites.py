"""The network computes several layers in a folded form that moves fewer bytes (docs/model.md, "What
a 720p frame moves"). Each must equal the plain form it replaces, written out here as the modules'
weights say, on random weights: the rewrites keep the weights and the outputs."""

import pytest
import torch
import torch.nn.functional as F

from derain.model import build_model, get_config
from derain.model.attention import WindowAttention, window_partition
from derain.model.blocks import GatedConvFeedForward
from derain.model.network import pad_to_multiple

TOLERANCE = 1e-5


def plain_attention(module: WindowAttention, x: torch.Tensor, rain_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Window attention as one (L, 3C) projection split into heads, scaled q, the rain mask's key bias
    if masked, softmax, projection."""
    b, h, w, c = x.shape
    win, heads = module.window, module.heads
    tokens = window_partition(x, win)  # (B, G, N, C)
    q, k, v = module.qkv(tokens).reshape(*tokens.shape[:3], 3, heads, c // heads).permute(3, 0, 1, 4, 2, 5)
    logits = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1)
    if module.position_bias is not None:
        logits = logits + module.position_bias[:, module.position_index]
    if module.masked:  # logits (B, G, heads, N, N); the mask's keys (B, G, 1, 1, N)
        logits = logits - module.log_mask_strength.exp() * window_partition(rain_mask, win)[:, :, None, None, :, 0]
    out = (logits.softmax(-1) @ v).permute(0, 1, 3, 2, 4).reshape(*tokens.shape[:3], c)  # (B, G, N, C)
    out = module.proj(out).reshape(b, h // win, w // win, win, win, c).permute(0, 1, 3, 2, 4, 5)
    return out.reshape(b, h, w, c)


@pytest.mark.parametrize("kind", ["plain", "position_bias", "masked"])
def test_head_projections_equal_one_qkv_projection_split(kind):
    """The masked block (MAB) adds q's bias to the logits as a key bias instead of to q."""
    torch.manual_seed(0)
    module = WindowAttention(32, heads=2, window=4, position_bias=kind == "position_bias", masked=kind == "masked").eval()
    with torch.no_grad():
        module.qkv.bias.normal_()  # q's, k's and v's biases are moved, not dropped: they must matter here
        x, rain_mask = torch.randn(2, 8, 12, 32), (torch.rand(2, 8, 12, 1) > 0.7).float()
        assert torch.allclose(module(x, rain_mask), plain_attention(module, x, rain_mask), atol=TOLERANCE)


def test_feed_forward_in_nchw_equals_the_channels_last_form():
    torch.manual_seed(0)
    ffn = GatedConvFeedForward(16, 1.5).eval()
    x = torch.randn(1, 10, 14, 16)
    with torch.no_grad():
        gate, value = ffn.depthwise(ffn.expand(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).chunk(2, dim=-1)
        assert torch.allclose(ffn(x), ffn.reduce(F.gelu(gate) * value), atol=TOLERANCE)


def plain_forward(model, image: torch.Tensor) -> torch.Tensor:
    """The U-net with every module's own forward: embed, Downsample, Upsample (conv, PixelShuffle),
    fuse over the concatenation, head."""
    height, width = image.shape[-2:]
    x = pad_to_multiple(image, model.config.size_multiple)
    masks = model.rain_mask.pyramid(x, model.config.levels)
    features, skips = model.embed(x), []
    for level, (stage, down) in enumerate(zip(model.encoder, model.down)):
        features = stage(features, masks[level])
        skips.append(features)
        features = down(features)
    features = model.bottleneck(features, masks[-1])
    for level in reversed(range(model.config.levels)):
        features = model.fuse[level](torch.cat([model.up[level](features), skips[level]], dim=1))
        features = model.decoder[level](features, masks[level])
    return (x + model.head(model.refine(features, masks[0])))[..., :height, :width]


@pytest.mark.parametrize("name", ["realtime", "tiny", "edge-k3"])
def test_folded_decoder_stem_and_head_equal_the_plain_network(name):
    """realtime folds its stem and head (empty first levels, 1x1 resampling); tiny has blocks there;
    edge-k3's 3x3 resampling convs make the transposed conv's kernel 6."""
    config = get_config("tiny")
    if name == "realtime":
        config = get_config("realtime")
    elif name == "edge-k3":
        config = config.__class__(**{**config.to_dict(), "name": "edge-k3", "resample_kernel": 3,
                                     "encoder_blocks": (1, 1), "decoder_blocks": (1, 1)})
    torch.manual_seed(0)
    model = build_model(config).eval()
    for parameter in (p for n, p in model.named_parameters() if n.endswith("bias")):
        torch.nn.init.normal_(parameter, std=0.1)  # zero biases would hide a misplaced one
    assert model.linear_ends == (name == "realtime")
    # 70x90 lies inside its padded canvas; 128x64 fills it, so the last row and column are border lines too
    for size in ((70, 90), (128, 64)):
        image = torch.rand(2, 3, *size)
        with torch.no_grad():
            assert torch.allclose(model(image), plain_forward(model, image), atol=TOLERANCE), size
