"""Data order and splitting: a function of (seed, step), independent of the number of processes."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from kdlib.models import load_mllm
from kdlib.profiles import get_profile
from kdlib.train.batches import (BatchOrder, ground_truth_micro_batches, local_block, micro_slices, scored_tokens,
                                 step_generator)
from kdlib.train.config import TrainConfig
from kdlib.train.harness import cpu_has_bf16, make_accelerator, train_collator
from kdlib.train.methods import build_objective


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
    a, b = (torch.rand(3, generator=step_generator(0, 5)) for _ in range(2))
    assert torch.equal(a, b) and not torch.equal(a, torch.rand(3, generator=step_generator(0, 6)))


def _step_sums(objective, micros):
    """The step's loss and gradient: sums over the micro-batches, as the training loop forms them."""
    objective.zero_grad()
    loss = sum(objective(dict(m))["loss"] for m in micros)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in objective.named_parameters() if p.grad is not None}


def _sequences(micros) -> list[tuple[int, ...]]:
    """The non-padding token ids of every row of ``micros``, sorted: which records the step sees."""
    return sorted(tuple(ids[mask.bool()].tolist()) for m in micros
                  for ids, mask in zip(m["input_ids"], m["attention_mask"]))


def test_length_grouping_changes_no_loss_value_and_pads_less(profile, study, start_models):
    start = load_mllm(start_models / "models" / "student_sft")
    cfg = TrainConfig.from_profile(profile, "sft", batch_size=8, progress=False)
    accelerator = make_accelerator(cfg, "cpu")
    collate = train_collator(start.model, start.tokenizer, start.image_processor, cfg)
    by_task: dict[str, list] = {}
    for record in study.train:  # long (captions, regions) and short (classes, yes/no) answers mixed
        by_task.setdefault(record.task, []).append(record)
    records = [r for rs in by_task.values() for r in rs[:2]][:8]
    objective = build_objective(start.model, None, cfg).eval()  # no dropout: every grouping sees the same net

    def micros(size: int, grouped: bool):
        return ground_truth_micro_batches(records, collate, 8, size, accelerator, grouped)

    whole, plain, grouped = micros(0, False), micros(2, False), micros(2, True)
    assert grouped[0]["denom"] == plain[0]["denom"] == float(scored_tokens(whole[0]["labels"]))
    assert _sequences(grouped) == _sequences(whole) and sum(m["num_tokens"] for m in grouped) == whole[0]["num_tokens"]
    positions = [sum(m["input_ids"].numel() for m in ms) for ms in (whole, plain, grouped)]
    assert positions[2] < positions[1] == positions[0], positions
    (loss0, grads0), (loss1, _), (loss2, grads2) = (_step_sums(objective, ms) for ms in (whole, plain, grouped))
    torch.testing.assert_close(loss1, loss0, rtol=1e-5, atol=0)
    torch.testing.assert_close(loss2, loss0, rtol=1e-5, atol=0)
    assert grads0.keys() == grads2.keys()
    for name in grads0:
        torch.testing.assert_close(grads2[name], grads0[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bf16 instructions, so kdlib trains float32 on it")
def test_bf16_and_float32_steps_agree_within_tolerance(profile, study, start_models, bf16_agrees_with_float32):
    """One SFT step of the tiny student under ``dtype="bfloat16"`` against float32 on the same records and
    weights, within the tolerance stated by the ``bf16_agrees_with_float32`` fixture."""
    start = load_mllm(start_models / "models" / "student_sft")
    cfg = TrainConfig.from_profile(profile, "sft", batch_size=8, progress=False)
    collate = train_collator(start.model, start.tokenizer, start.image_processor, cfg)
    micros = ground_truth_micro_batches(study.train[:8], collate, 8, 0, make_accelerator(cfg, "cpu"), False)
    bf16_agrees_with_float32(build_objective(start.model, None, cfg).eval(), micros, cfg)


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bf16 instructions, so every run here is float32")
def test_runs_of_different_precisions_follow_each_other_in_one_process():
    """A notebook trains a float32 (tiny) run and then a bf16 (small) one: accelerate's one state per
    process would refuse the second ("restart your runtime"); make_accelerator releases it."""
    cfg = TrainConfig.from_profile(get_profile("tiny"), "sft")
    bf16 = dataclasses.replace(cfg, dtype="bfloat16")
    got = [make_accelerator(c, "cpu").mixed_precision for c in (cfg, bf16, bf16, cfg)]
    assert got == ["no", "bf16", "bf16", "no"]
