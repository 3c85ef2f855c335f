import pytest
import torch

from derain.model.ops import prefix_sum
from derain.model.sorting import positions_argsort, positions_counting, rearrange, restore


@pytest.mark.parametrize("shape,dim", [((1, 61_440, 32), 1), ((2, 15_360), 1), ((1, 32), 1), ((1, 33), 1),
                                       ((192, 320, 1), 0), ((192, 320, 1), 1), ((3, 1, 5), 1), ((4, 1025), 1)])
def test_prefix_sum_equals_cumsum_exactly(shape, dim):
    counts = torch.randint(0, 3, shape, generator=torch.Generator().manual_seed(len(shape))).float()
    assert torch.equal(prefix_sum(counts, dim), counts.cumsum(dim))


def _tf32(t: torch.Tensor) -> torch.Tensor:
    """float32 rounded to TF32's 10-bit mantissa, as TensorRT's TF32 MatMuls round their inputs."""
    bits = t.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


def test_prefix_sum_is_exact_with_tf32_rounded_operands(monkeypatch):
    assert _tf32(torch.tensor([2049.0])).item() != 2049.0 and _tf32(torch.tensor([2048.0])).item() == 2048.0
    original = torch.Tensor.__matmul__
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: original(_tf32(a), _tf32(b)))
    ones, counts = torch.ones(1, 61_440), torch.randint(0, 61_440, (1, 32)).float()
    assert torch.equal(prefix_sum(ones, 1), ones.cumsum(1))  # the positions 0..L-1, plus one
    assert torch.equal(prefix_sum(counts, 1, largest=61_440), counts.cumsum(1))  # the per-key offsets
    one_hot = torch.nn.functional.one_hot(torch.randint(0, 32, (1, 61_440)), 32).float()
    assert torch.equal(prefix_sum(one_hot, 1), one_hot.cumsum(1))


@pytest.mark.parametrize("batch,tokens,clusters", [(1, 16, 4), (2, 64, 8), (3, 1000, 16), (1, 4096, 8),
                                                   (2, 921_600 // 64, 3), (1, 61_440, 32), (1, 15_360, 32)])
def test_counting_sort_equals_argsort_exactly(batch, tokens, clusters):
    generator = torch.Generator().manual_seed(tokens)
    cluster_ids = torch.randint(0, clusters, (batch, tokens), generator=generator)
    counting = positions_counting(cluster_ids, clusters)
    assert counting.dtype == torch.long
    assert torch.equal(counting, positions_argsort(cluster_ids))


def test_counting_sort_handles_empty_and_single_clusters():
    cluster_ids = torch.tensor([[3, 3, 3, 3, 0, 0]])  # clusters 1 and 2 are empty
    assert torch.equal(positions_counting(cluster_ids, 4), positions_argsort(cluster_ids))
    assert positions_counting(cluster_ids, 4).tolist() == [[2, 3, 4, 5, 0, 1]]


@pytest.mark.parametrize("method", [positions_argsort, lambda ids: positions_counting(ids, 5)])
def test_rearrange_groups_clusters_stably_and_restore_inverts_it(method):
    generator = torch.Generator().manual_seed(0)
    cluster_ids = torch.randint(0, 5, (2, 300), generator=generator)
    tokens = torch.randn(2, 300, 7, generator=generator)
    tokens[..., 0] = torch.arange(300.0)  # remember each token's original index
    dest = method(cluster_ids)
    ordered = rearrange(tokens, dest)
    ordered_ids = rearrange(cluster_ids[..., None].float(), dest)[..., 0]
    assert (ordered_ids.diff(dim=1) >= 0).all()  # grouped by cluster
    same_cluster = ordered_ids.diff(dim=1) == 0
    assert (ordered[..., 0].diff(dim=1)[same_cluster] > 0).all()  # stable: original order kept
    assert torch.equal(restore(ordered, dest), tokens)
