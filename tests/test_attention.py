import math

import torch

from derain.model.attention import WindowAttention, shift_region_bias


def _masked_attention(shift: bool = False) -> WindowAttention:
    """A MAB whose strength has grown large, as training can make it: masked keys then get no weight."""
    torch.manual_seed(0)
    attention = WindowAttention(dim=8, heads=2, window=4, shift=shift, masked=True).eval()
    with torch.no_grad():
        attention.log_mask_strength.fill_(math.log(50.0))
    return attention


def test_mask_strength_is_per_head_on_a_log_scale_and_learns():
    attention = WindowAttention(dim=8, heads=2, window=4, masked=True)
    assert attention.log_mask_strength.shape == (2, 1, 1)
    assert torch.allclose(attention.log_mask_strength.exp(), torch.tensor(WindowAttention.MASK_STRENGTH))
    mask = (torch.rand(1, 8, 8, 1) > 0.5).float()
    attention(torch.randn(1, 8, 8, 8), mask).square().sum().backward()
    assert (attention.log_mask_strength.grad.abs() > 0).all()  # both heads' strengths move


def test_stb_has_swin_relative_position_bias():
    attention = WindowAttention(dim=8, heads=2, window=4, position_bias=True)
    assert attention.position_bias.shape == (2, 49)
    assert attention.position_index.shape == (16, 16) and int(attention.position_index.max()) == 48
    # The same relative offset reads the same table entry: (0,0)->(1,1) and (1,1)->(2,2).
    assert attention.position_index[0, 5] == attention.position_index[5, 10]
    x = torch.randn(1, 4, 4, 8)
    before = attention(x)
    with torch.no_grad():
        attention.position_bias.add_(torch.randn_like(attention.position_bias))
    assert not torch.allclose(attention(x), before)


def test_mab_ignores_masked_keys():
    attention = _masked_attention()
    x = torch.randn(1, 8, 8, 8)
    mask = torch.zeros(1, 8, 8, 1)
    mask[0, 1, 2] = 1.0  # a rain pixel in the first window
    changed = x.clone()
    changed[0, 1, 2] += 5.0
    with torch.no_grad():
        before, after = attention(x, mask), attention(changed, mask)
        unmasked_after = attention(changed, torch.zeros_like(mask))
        unmasked_before = attention(x, torch.zeros_like(mask))
    others = torch.ones(8, 8, dtype=torch.bool)
    others[1, 2] = False
    torch.testing.assert_close(after[0][others], before[0][others], atol=1e-6, rtol=0)
    # The test can fail: the rain pixel's own output changes, and without the mask its neighbours do.
    assert not torch.allclose(after[0, 1, 2], before[0, 1, 2])
    assert not torch.allclose(unmasked_after[0, 0, 0], unmasked_before[0, 0, 0], atol=1e-4)


def test_a_window_that_is_all_rain_falls_back_to_plain_attention():
    attention = _masked_attention()
    x = torch.randn(1, 4, 8, 8)
    mask = torch.zeros(1, 4, 8, 1)
    mask[0, :, :4] = 1.0  # the whole left window is rain
    mask[0, 0, 5] = 1.0  # and one pixel of the right one
    with torch.no_grad():
        masked, plain = attention(x, mask), attention(x, torch.zeros_like(mask))
    assert torch.isfinite(masked).all()
    torch.testing.assert_close(masked[0, :, :4], plain[0, :, :4], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(masked[0, :, 4:], plain[0, :, 4:], atol=1e-4)


def test_shifted_masked_attention_ignores_masked_keys_too():
    attention = _masked_attention(shift=True)
    x = torch.randn(1, 8, 8, 8)
    mask = torch.zeros(1, 8, 8, 1)
    mask[0, 5, 6] = 1.0
    changed = x.clone()
    changed[0, 5, 6] -= 3.0
    with torch.no_grad():
        before, after = attention(x, mask), attention(changed, mask)
    others = torch.ones(8, 8, dtype=torch.bool)
    others[5, 6] = False
    torch.testing.assert_close(after[0][others], before[0][others], atol=1e-6, rtol=0)


def test_shift_bias_separates_wrapped_regions_only():
    bias = shift_region_bias(torch.zeros(1, 8, 8, 3), window=4, shift=2)
    assert bias.shape == (4, 16, 16)
    assert bias[0].eq(0).all()  # the top-left window holds one region
    assert bias[3].lt(0).any()  # the bottom-right one mixes wrapped borders
