"""Data order and splitting: a function of (seed, step), independent of the number of processes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kdlib.train.batches import BatchOrder, local_block, micro_slices, step_generator


def test_each_epoch_visits_every_sample_once_in_a_seeded_order():
    order = BatchOrder(size=10, batch_size=4, seed=3)
    stream = [i for step in range(5) for i in order.indices(step)]  # 20 positions = 2 epochs
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert stream[:10] != stream[10:]
    again = BatchOrder(size=10, batch_size=4, seed=3)
    assert [again.indices(s) for s in (4, 0, 2)] == [order.indices(s) for s in (4, 0, 2)]
    assert BatchOrder(10, 4, seed=4).indices(0) != order.indices(0)


def test_process_blocks_partition_the_global_batch():
    items = list(range(8))
    blocks = [local_block(items, SimpleNamespace(num_processes=2, process_index=r)) for r in range(2)]
    assert blocks[0] + blocks[1] == items
    with pytest.raises(ValueError, match="not divisible"):
        local_block(list(range(5)), SimpleNamespace(num_processes=2, process_index=0))


def test_micro_slices_cover_the_rows():
    assert micro_slices(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert micro_slices(5, 0) == [slice(0, 5)]


def test_step_noise_is_reproducible():
    import torch

    a, b = (torch.rand(3, generator=step_generator(0, 5)) for _ in range(2))
    assert torch.equal(a, b) and not torch.equal(a, torch.rand(3, generator=step_generator(0, 6)))
