"""GeoLLaVA-8K token reduction: background merging and anchored selection."""

from __future__ import annotations

import pytest
import torch

from kdlib.pruning import OFFSETS, anchored_select, background_prune, cluster_roots, neighbour_index


def test_uniform_image_collapses_to_one_cluster() -> None:
    tokens = torch.ones(6 * 5, 4) * torch.tensor([1.0, 2.0, 3.0, 4.0])
    out = background_prune(tokens, (6, 5))
    assert out.num_clusters.tolist() == [1]
    assert (out.labels == 0).all() and out.counts[0, 0] == 30
    assert torch.allclose(out.centers[0, 0], tokens[0])


def test_two_regions_become_two_cluster_means() -> None:
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    grid = torch.zeros(4, 6, 3)
    grid[:, :3], grid[:, 3:] = a, b
    noise = 0.01 * torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(0))
    tokens = (grid + noise).view(1, 24, 3)
    out = background_prune(tokens, (4, 6), threshold=0.9)
    assert out.num_clusters.tolist() == [2]
    left = torch.arange(24).view(4, 6)[:, :3].flatten()
    assert (out.labels[0, left] == out.labels[0, left[0]]).all()
    root = out.labels[0, left[0]]
    assert torch.allclose(out.centers[0, root], tokens[0, left].mean(0), atol=1e-6)


def test_explicit_affinity_and_neighbour_layout() -> None:
    nbr = neighbour_index((3, 4))
    assert nbr[5].tolist() == [0, 1, 2, 4, 5, 6, 8, 9, 10]  # patch (1, 1): rows 0-2, cols 0-2
    assert nbr[0].tolist() == [0, 0, 1, 0, 0, 1, 4, 4, 5]  # clamped at the corner
    right = OFFSETS.index((0, 1))
    affinity = torch.zeros(1, 12, 9)
    affinity[..., right] = 1.0  # every patch follows its right neighbour: one cluster per row
    out = background_prune(torch.randn(12, 2), (3, 4), affinity=affinity)
    assert out.labels[0].tolist() == [3] * 4 + [7] * 4 + [11] * 4


def test_mutual_parents_do_not_oscillate() -> None:
    parent = torch.tensor([[1, 0, 1, 2]])  # 0 <-> 1 point at each other; 3 -> 2 -> 1
    assert cluster_roots(parent).tolist() == [[0, 0, 0, 0]]


def test_anchored_select_top_k_in_spatial_order() -> None:
    clusters = torch.eye(6)[None] * torch.tensor([1.0, 5.0, 2.0, 4.0, 3.0, 6.0])[None, :, None]
    anchor = torch.ones(1, 6)
    counts = torch.tensor([[1, 1, 1, 1, 1, 0]])  # slot 5 is empty: never chosen while others remain
    tokens, index = anchored_select(clusters, anchor, k=3, counts=counts)
    assert index.tolist() == [[1, 3, 4]]  # scores 5, 4, 3 -> re-sorted to spatial order
    assert torch.equal(tokens, clusters[:, [1, 3, 4]])
    with pytest.raises(ValueError, match="k = 7"):
        anchored_select(clusters, anchor, k=7)
