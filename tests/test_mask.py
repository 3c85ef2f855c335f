import numpy as np
import pytest
import torch

from derain.model.mask import RainMask, white_top_hat


def _streaky_scene(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth gradient with thin bright diagonal streaks; returns (image, streak pixels)."""
    rng = np.random.default_rng(seed)
    h, w = 96, 128
    base = np.linspace(0.2, 0.5, w)[None, :].repeat(h, 0)
    streaks = np.zeros((h, w), bool)
    for _ in range(25):
        y, x = rng.integers(0, h - 20), rng.integers(0, w - 10)
        for t in range(15):
            streaks[y + t, x + t // 3] = True
    image = np.where(streaks, 0.95, base)
    return torch.tensor(image, dtype=torch.float32).expand(1, 3, h, w).clone(), torch.tensor(streaks)


def test_top_hat_is_zero_on_flat_and_smooth_images():
    smooth = torch.linspace(0, 1, 64).expand(1, 1, 64, 64)
    assert white_top_hat(smooth, 7).abs().max() < 1e-6


def test_mask_highlights_streaks_and_not_flat_regions():
    image, streaks = _streaky_scene()
    with torch.no_grad():
        mask = RainMask()(image)[0, 0]
    assert mask.shape == streaks.shape
    assert mask[streaks].mean() > 0.9
    far_from_streaks = ~torch.nn.functional.max_pool2d(streaks.float()[None, None], 9, 1, 4)[0, 0].bool()
    assert mask[far_from_streaks].max() < 0.05


def test_mask_of_a_flat_image_is_empty():
    with torch.no_grad():
        assert RainMask()(torch.full((1, 3, 40, 40), 0.6)).max() < 0.05


def test_mask_pyramid_halves_and_keeps_rain():
    image, _ = _streaky_scene()
    with torch.no_grad():
        masks = RainMask().pyramid(image, 2)
    assert [m.shape[-2:] for m in masks] == [(96, 128), (48, 64), (24, 32)]
    assert masks[1].max() >= masks[0].max() - 1e-6


def test_mask_threshold_is_fixed_and_the_mab_strength_learns_instead():
    from derain.model import build_model

    model = build_model("tiny")
    assert not [name for name, _ in model.named_parameters() if name.startswith("rain_mask.")]
    assert any(name.endswith("log_mask_strength") for name, _ in model.named_parameters())
    assert float(model.rain_mask.threshold_floor) == pytest.approx(model.config.mask_threshold_floor)  # a buffer


def test_the_threshold_uses_the_variance_only_where_its_weight_is_not_zero():
    """With threshold_std 0 (the bundled checkpoint) the mask's graph computes no full-image variance,
    and the mask is the one of mean + 0 * std + floor."""
    image, _ = _streaky_scene()
    mask = RainMask(threshold_std=0.0)
    with torch.no_grad():
        assert not torch.equal(mask(image), RainMask(threshold_std=0.5)(image))
        assert torch.equal(mask(image), RainMask(threshold_std=1e-30)(image))  # the variance's term, vanishingly weighted
    graph = torch.jit.trace(mask, image).graph
    assert "aten::std" not in str(graph) and "aten::std" in str(torch.jit.trace(RainMask(threshold_std=0.5), image).graph)
