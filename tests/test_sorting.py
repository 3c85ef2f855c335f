import pytest
import torch

from derain.model.sorting import positions_argsort, positions_counting, rearrange, restore


@pytest.mark.parametrize("batch,tokens,clusters", [(1, 16, 4), (2, 64, 8), (3, 1000, 16), (1, 4096, 8),
                                                   (2, 921_600 // 64, 3)])
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
