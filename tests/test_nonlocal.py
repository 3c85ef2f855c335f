"""The NAB's non-locality: sub-bucket sort keys, cluster balancing, half-chunk shifts."""

import torch
import torch.nn.functional as F

from derain.model.nonlocal_attention import NonLocalAttention
from derain.model.sorting import positions_argsort, rearrange


def _attention(**kwargs) -> NonLocalAttention:
    torch.manual_seed(0)
    return NonLocalAttention(dim=8, heads=1, window=2, clusters=4, **kwargs)


def test_sub_buckets_order_a_cluster_by_nearness_to_its_centroid():
    attention = _attention(sub_buckets=4).eval()
    tokens = torch.randn(1, 64, 8)
    cluster_ids, keys = attention.sort_keys(tokens)
    assert torch.equal(keys // 4, cluster_ids) and keys.max() < 16
    nearness = (F.normalize(tokens, dim=-1) @ attention.centroids.t()).gather(-1, cluster_ids[..., None])[..., 0]
    ordered_keys = rearrange(keys[..., None].float(), positions_argsort(keys))[0, :, 0]
    ordered_nearness = rearrange(nearness[..., None], positions_argsort(keys))[0, :, 0]
    assert (ordered_keys.diff() >= 0).all()
    same_cluster = (ordered_keys // 4).diff() == 0
    # Within a cluster, bands of nearness come in order (a coarse sort by similarity to the centroid).
    band = (ordered_nearness.clamp(0, 1) * 4).floor().clamp(max=3)
    assert (band.diff()[same_cluster] >= 0).all()


def test_balancing_bias_moves_tokens_towards_an_underused_cluster():
    attention = _attention().train()
    tokens = F.normalize(torch.rand(2, 64, 8) + 1.0, dim=-1)  # one narrow cone: one cluster wins all
    with torch.no_grad():
        attention.centroids.copy_(F.normalize(torch.ones(4, 8) + torch.eye(4, 8) * torch.tensor([[0.0], [0.6], [0.8], [1.0]]), dim=-1))
    attention.reseed = False  # isolate the bias from codebook resets
    before = torch.bincount(attention.sort_keys(tokens)[0].flatten(), minlength=4)
    for _ in range(300):
        attention.sort_keys(tokens)
    after = torch.bincount(attention.eval().sort_keys(tokens)[0].flatten(), minlength=4)
    assert before.max() >= 100 and after.max() < 60 and after.min() > before.min()
    assert abs(float(attention.balance.sum())) < 1e-4  # a zero-mean bias: only relative use changes


def test_shifted_block_moves_chunk_boundaries_by_half_a_chunk():
    plain, shifted = _attention(shift=False).eval(), _attention(shift=True).eval()
    shifted.load_state_dict(plain.state_dict())
    x = torch.randn(1, 4, 4, 8)
    with torch.no_grad():
        a, b = plain(x) - plain.local(x), shifted(x) - shifted.local(x)
    assert a.shape == b.shape and not torch.allclose(a, b, atol=1e-5)
