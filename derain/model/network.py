"""The dual-stage deraining network: a U-shaped encoder of masked attention blocks (stage 1, rain
streak suppression) and a decoder of non-local attention blocks (stage 2, detail reconstruction),
predicting a residual that is added to the input."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Stage
from .config import ModelConfig, get_config
from .mask import RainMask
from .nonlocal_attention import NonLocalAttention
from .sorting import SortMethod


class Downsample(nn.Module):
    """Halve the resolution, double the channels: conv (3x3 in Restormer) then PixelUnshuffle."""

    def __init__(self, dim: int, kernel: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim // 2, kernel, padding=kernel // 2, bias=False),
                                  nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        """(B, C, H, W) -> (B, 2C, H/2, W/2), or (B, H/2, W/2, 2C) with `channels_last`: the layout a
        transformer stage takes, written by the unshuffle's own transpose instead of one more."""
        return unshuffle(self.body[0](x), channels_last)


def unshuffle(y: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """PixelUnshuffle(2), into (B, H/2, W/2, 4C) with `channels_last` by the same one transpose."""
    if not channels_last:
        return F.pixel_unshuffle(y, 2)
    b, c, h, w = y.shape
    # PixelUnshuffle's channel 4c + 2i + j is input channel c at sub-pixel (i, j)
    return y.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, h // 2, w // 2, 4 * c)


class Upsample(nn.Module):
    """Double the resolution, halve the channels: conv then PixelShuffle (sub-pixel conv). The
    network runs it fused with the fuse conv after it (DerainNet.upsample_fused); this module holds
    the weights, and its forward is the reference the fused form equals."""

    def __init__(self, dim: int, kernel: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim * 2, kernel, padding=kernel // 2, bias=False),
                                  nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class DerainNet(nn.Module):
    """(B, 3, H, W) rainy image in [0, 1] -> derained image of the same size (not clamped)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = cfg = config
        dims = [cfg.channels * 2**i for i in range(cfg.levels + 1)]

        def stage(kind, depth, level):  # noqa: ANN001, ANN202 - local shorthand
            return Stage(kind, depth, dims[level], cfg.heads[level], cfg.window, cfg.clusters, cfg.ffn_expansion,
                         cfg.sub_buckets)

        self.rain_mask = RainMask(cfg.mask_kernel, cfg.mask_line, cfg.mask_line_width, cfg.mask_threshold_std,
                                  cfg.mask_threshold_floor, cfg.mask_softness)
        self.embed = nn.Conv2d(3, cfg.channels, 3, padding=1)
        self.encoder = nn.ModuleList(
            stage(cfg.stage_kind("encoder", i), n, i) for i, n in enumerate(cfg.encoder_blocks))
        self.down = nn.ModuleList(Downsample(dims[i], cfg.resample_kernel) for i in range(cfg.levels))
        self.bottleneck = stage(cfg.bottleneck_block, cfg.bottleneck_blocks, cfg.levels)
        # Decoder modules are indexed by level (0 = full resolution), run from coarse to fine.
        self.up = nn.ModuleList(Upsample(dims[i + 1], cfg.resample_kernel) for i in range(cfg.levels))
        self.fuse = nn.ModuleList(nn.Conv2d(2 * dims[i], dims[i], 1) for i in range(cfg.levels))
        self.decoder = nn.ModuleList(
            stage(cfg.stage_kind("decoder", i), n, i)
            for i, n in zip(reversed(range(cfg.levels)), cfg.decoder_blocks)
        )[::-1]
        self.refine = stage(cfg.stage_kind("decoder", 0), cfg.refine_blocks, 0)
        self.head = nn.Conv2d(cfg.channels, 3, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        x = pad_to_multiple(image, self.config.size_multiple)
        masks = self.rain_mask.pyramid(x, self.config.levels)

        skips: list[torch.Tensor | None] = []  # each level's skip, through its half of fuse
        first, channels_last = 0, False  # channels_last: the layout `features` has
        if self.linear_ends:  # levels 0 and 1 are linear maps of the image, composed
            first, channels_last = 2, self.stage_after(1).takes_channels_last
            skips, features = self.linear_encoder(x, channels_last)
        else:
            features = self.embed(x)
        for level in range(first, self.config.levels):
            features = self.encoder[level](features, masks[level], channels_last)
            skips.append(F.conv2d(features, self.skip_weight(level)))
            channels_last = self.stage_after(level).takes_channels_last
            features = self.down[level](features, channels_last)
        features = self.bottleneck(features, masks[-1], channels_last)
        for level in reversed(range(self.config.levels)):
            if level == 0 and self.linear_ends:
                return self.linear_output(x, features, height, width)
            features = self.decoder[level](self.upsample_fused(level, features) + skips[level], masks[level])
        features = self.refine(features, masks[0])
        return (x + self.head(features))[..., :height, :width]

    def stage_after(self, level: int) -> Stage:
        """The encoder stage that level `level`'s Downsample feeds (the bottleneck after the last)."""
        return self.encoder[level + 1] if level + 1 < self.config.levels else self.bottleneck

    def skip_weight(self, level: int) -> torch.Tensor:
        """The 1x1 weights of fuse[level] for the skip's half of its input."""
        return self.fuse[level].weight[:, self.fuse[level].out_channels:]

    @property
    def linear_ends(self) -> bool:
        """Nothing but linear layers at full and half resolution in the encoder and at full resolution
        in the decoder (realtime): no blocks in the first two encoder levels, the first decoder level or
        the refinement, and 1x1 convs around the pixel (un)shuffles. What the encoder passes on from its
        first two levels, and the output, then compose from the layers' weights (linear_encoder,
        linear_output)."""
        return (self.config.levels >= 2 and not self.encoder[0].blocks and not self.encoder[1].blocks
                and not self.decoder[0].blocks and not self.refine.blocks and self.config.resample_kernel == 1)

    def linear_encoder(self, image: torch.Tensor, channels_last: bool) -> tuple[list[torch.Tensor | None], torch.Tensor]:
        """The skips of levels 0 and 1 (level 0's is folded into linear_output: None) and the input of
        level 2 (channels-last if `channels_last`), straight from the image (linear_ends). Both are
        1x1 convs of the stem, down[0](embed(image)), so each is one conv of the image: the skip a
        stride-2 conv of kernel 4, and level 2's input, whose down[1] unshuffles once more, a
        stride-4 conv of kernel 6 that writes it at quarter resolution. No full-resolution embedding,
        no half-resolution stem map and no unshuffled copy is written (the conv's output transposes
        to channels-last in 64-channel runs, where the unshuffle's own transpose moved 2 values at a
        time). Same weights, same result up to rounding."""
        stem, stem_bias = self.stem_kernel()
        skip_weight, down_weight = self.skip_weight(1)[:, :, 0, 0], self.down[1].body[0].weight[:, :, 0, 0]
        skip_kernel, kernel = (torch.einsum("oc,cikl->oikl", w, stem) for w in (skip_weight, down_weight))
        skip_bias, bias = skip_weight @ stem_bias, down_weight @ stem_bias
        # down[1]'s PixelUnshuffle(2) over the stride-2 conv: a stride-4 conv of kernel 6
        level2 = F.conv2d(image, _unshuffled(kernel, 2), bias.repeat_interleave(4), stride=4, padding=1)
        skip = F.conv2d(image, skip_kernel, skip_bias, stride=2, padding=1)
        return [None, skip], level2.permute(0, 2, 3, 1) if channels_last else level2

    def stem_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the stem, down[0](embed(image)), as one stride-2 conv of the image with
        kernel 4 and padding 1: down[0]'s 1x1 conv folded into embed's 3x3, and PixelUnshuffle(2)
        written as the stride (sub-pixel (i, j) takes the 3x3 taps shifted by (i, j)). A 1x1 conv after
        it folds in as one more product (linear_encoder)."""
        down = self.down[0].body[0].weight[:, :, 0, 0]  # (C/2, C)
        weight = torch.einsum("oc,cikl->oikl", down, self.embed.weight)  # (C/2, 3, 3, 3)
        return _unshuffled(weight, 1), (down @ self.embed.bias).repeat_interleave(4)

    def linear_output(self, x: torch.Tensor, features: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """x + head(fuse(cat[up[0](features), embed(x)])), cropped (linear_ends), with no full-resolution
        tensor wider than the image's 3 channels: embed, the skip's half of fuse and the head compose
        into one 5x5 conv of the image (x itself folded into its centre tap), and up[0], the other half
        of fuse and the head into one stride-2 transposed conv of kernel 4. Each 16-channel full-size
        map they replace was written once and read once (0.12 GB of a 720p FP16 frame).

        The compositions equal the layers everywhere but on the canvas's outermost lines, where the
        head's zero padding would have cut off the embedding's (or the upsampling's bias) beyond the
        border: there the layers run one after the other on strips four pixels wide, and their lines
        take those places. Same weights, same result up to rounding."""
        up_weight, up_bias = self.upsample_weights(0)
        skip_weight = self.skip_weight(0)[:, :, 0, 0]
        head_skip = torch.einsum("ocij,cd->odij", self.head.weight, skip_weight)  # (3, C, 3, 3)
        # Kernel of a conv of a conv: the outer kernel slid over the inner one (full convolution).
        image_kernel = F.conv_transpose2d(self.embed.weight.transpose(0, 1), head_skip.transpose(0, 1)).transpose(0, 1)
        image_kernel = image_kernel + F.pad(torch.eye(3, dtype=x.dtype, device=x.device)[:, :, None, None], (2, 2, 2, 2))
        up_kernel = F.conv_transpose2d(up_weight, self.head.weight.flip(-1, -2).transpose(0, 1))  # (2C, 3, 4, 4)
        bias = self.head.bias + self.head.weight.sum((2, 3)) @ up_bias + head_skip.sum((2, 3)) @ self.embed.bias
        canvas = F.conv2d(x, image_kernel, bias, padding=2) + F.conv_transpose2d(features, up_kernel, stride=2, padding=1)

        def layered(rows: slice, cols: slice) -> torch.Tensor:
            """The layers one after the other on a strip of the canvas (even bounds: whole feature pixels)."""
            strip = x[..., rows, cols]
            upsampled = F.conv_transpose2d(features[..., _halve(rows), _halve(cols)], up_weight, up_bias, stride=2)
            return strip + self.head(upsampled) + F.conv2d(self.embed(strip), head_skip, padding=1)

        return _border_lines(canvas, layered, height, width)

    def upsample_weights(self, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The transposed conv that upsample_fused runs: its weight and bias."""
        conv, fuse = self.up[level].body[0], self.fuse[level]
        channels, k = fuse.out_channels, conv.kernel_size[0]
        # PixelShuffle(2) makes channel c at sub-pixel (i, j) from input channel 4c + 2i + j.
        weight = conv.weight.view(channels, 2, 2, *conv.weight.shape[1:])  # (c, i, j, in, dy, dx)
        weight = torch.einsum("oc,cij...->oij...", fuse.weight[:, :channels, 0, 0], weight)
        # A k x k conv followed by PixelShuffle(2) is one transposed conv of kernel 2k, stride 2:
        # output row 2y' + 2(k-1-dy) + i - (k-1) takes input row y' through tap dy of sub-pixel i.
        # Same multiply-adds, and no depth-to-space copy of the full-size result.
        return weight.flip(-1, -2).permute(3, 0, 4, 1, 5, 2).reshape(weight.shape[3], channels, 2 * k, 2 * k), fuse.bias

    def upsample_fused(self, level: int, features: torch.Tensor) -> torch.Tensor:
        """The upsampled half of fuse(cat[up(features), skip]), with fuse's weights for that half and its
        bias folded into the up conv (both are linear, and PixelShuffle only moves channels), so that
        fuse becomes a sum: no full-size concatenation is written, and each half keeps its own INT8
        range. Same weights, same result up to rounding."""
        weight, bias = self.upsample_weights(level)
        k = self.up[level].body[0].kernel_size[0]
        return F.conv_transpose2d(features, weight, bias, stride=2, padding=k - 1)

    def set_sort_method(self, method: SortMethod) -> None:
        """Choose the NAB rearrangement: "argsort" (reference) or "counting" (export-friendly)."""
        for module in self.nonlocal_attentions():
            module.sort_method = method

    def nonlocal_attentions(self) -> list[NonLocalAttention]:
        return [module for module in self.modules() if isinstance(module, NonLocalAttention)]

    @contextmanager
    def export_mode(self) -> Iterator["DerainNet"]:
        """Every change the model needs for ONNX/TensorRT, in one place; undone on exit.

        - eval mode (no centroid updates);
        - NAB rearrangement by counting sort: argsort exports as TopK, which TensorRT caps at
          K = 3840 tokens, and its output order would be the only data-dependent part."""
        was_training = self.training
        methods = [module.sort_method for module in self.nonlocal_attentions()]
        self.eval()
        self.set_sort_method("counting")
        try:
            yield self
        finally:
            for module, method in zip(self.nonlocal_attentions(), methods):
                module.sort_method = method
            self.train(was_training)


def _unshuffled(kernel: torch.Tensor, stride: int) -> torch.Tensor:
    """A conv of `stride` (kernel (O, I, k, k)) followed by PixelUnshuffle(2), as one conv of twice the
    stride and kernel k + stride: output channel 4o + 2i + j is sub-pixel (i, j), the kernel shifted
    by (stride * i, stride * j)."""
    out_channels, in_channels, k = (int(size) for size in kernel.shape[:3])  # plain ints: static for export
    shifted = [F.pad(kernel, (stride * j, stride - stride * j, stride * i, stride - stride * i)) for i in (0, 1) for j in (0, 1)]
    return torch.stack(shifted, dim=1).reshape(4 * out_channels, in_channels, k + stride, k + stride)


def _halve(canvas: slice) -> slice:
    """The half-resolution slice under an even-bounded canvas slice."""
    return slice(*(None if bound is None else bound // 2 for bound in (canvas.start, canvas.stop)))


def _border_lines(canvas: torch.Tensor, layered: Callable[[slice, slice], torch.Tensor], height: int,
                  width: int) -> torch.Tensor:
    """canvas[..., :height, :width] with its lines on the canvas's border (the first row and column;
    the last ones too where the image fills the canvas) taken from `layered` strips 4 pixels wide."""
    height, width = int(height), int(width)  # plain ints: sizes are static in an export
    everything, first, last = slice(None), slice(0, 4), slice(-4, None)
    last_row, last_col = int(height == canvas.shape[-2] and height > 1), int(width == canvas.shape[-1] and width > 1)
    rows = slice(1, height - last_row)
    top = layered(first, everything)[..., :1, :width]
    bottom = layered(last, everything)[..., -1:, :width] if last_row else None
    left = layered(everything, first)[..., rows, :1]
    right = layered(everything, last)[..., rows, -1:] if last_col else None
    middle = canvas[..., rows, 1:width - last_col]
    body = torch.cat([part for part in (left, middle, right) if part is not None], dim=-1)
    return torch.cat([part for part in (top, body, bottom) if part is not None], dim=-2)


def pad_to_multiple(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom/right so H and W are multiples of `multiple`: reflect where the image is large
    enough to mirror, else replicate the border."""
    height, width = image.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if not pad_h and not pad_w:
        return image
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(image, (0, pad_w, 0, pad_h), mode=mode)


def build_model(name: str | ModelConfig) -> DerainNet:
    return DerainNet(name if isinstance(name, ModelConfig) else get_config(name))
