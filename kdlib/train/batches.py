"""Which samples each step sees, and how a global batch is split across processes and micro-batches.

The order is a function of ``(seed, step)`` alone: the training set is read as an endless stream
of seeded permutations (one per epoch) and global step ``s`` takes positions ``[s B, (s + 1) B)``.
A resumed run therefore needs only the step count as its data position, and the global batch
of a step is the same whatever the number of processes. Process ``r`` of ``W`` takes the
``r``-th contiguous block of ``B / W`` samples, then cuts it into micro-batches.

Loss normalisers are global: :func:`global_count` sums a count over processes, and each
micro-batch carries ``denom = count / W`` (DDP averages gradients over processes) and
``share = b * W / B`` (its fraction of the batch, for losses averaged over samples).

Length grouping (``TrainConfig.group_by_length``) sorts a process's block by sequence length
before cutting it into micro-batches and drops each micro-batch's all-padding columns, so a
micro-batch is padded to its own longest row, not to the batch's. The step sees the same
records and the same normalisers; only the rows' grouping and the padding change, so the step's
loss and gradient are the same sums in another order.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from accelerate import Accelerator
from torch import Tensor


class BatchOrder:
    """Global batches of indices into a dataset of ``size`` samples: seeded permutation per epoch."""

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        if size <= 0:
            raise ValueError("cannot draw batches from an empty dataset")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}  # a batch spans <= 2 epochs
            self._perms[epoch] = torch.randperm(self.size, generator=gen).tolist()
        return self._perms[epoch]

    def indices(self, step: int) -> list[int]:
        """The ``batch_size`` dataset indices of global step ``step`` (0-based)."""
        start = step * self.batch_size
        return [self._perm(pos // self.size)[pos % self.size] for pos in range(start, start + self.batch_size)]


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU generator seeded by ``(seed, step, stream)``: the sampling noise of one step, on every process."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 7 + stream)


def local_block(items: Sequence[Any], accelerator: Accelerator) -> list[Any]:
    """This process's contiguous block of a global batch (its length must divide evenly)."""
    world, rank = accelerator.num_processes, accelerator.process_index
    if len(items) % world:
        raise ValueError(f"global batch {len(items)} is not divisible by {world} processes")
    per = len(items) // world
    return list(items[rank * per:(rank + 1) * per])


def micro_slices(n: int, micro_batch_size: int) -> list[slice]:
    """Consecutive slices of at most ``micro_batch_size`` rows covering ``n`` rows (0 = one slice)."""
    size = micro_batch_size or n
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def global_count(count: Tensor | int, accelerator: Accelerator) -> float:
    """The sum of ``count`` over processes."""
    value = torch.as_tensor(count, device=accelerator.device, dtype=torch.float64)
    return float(accelerator.reduce(value, reduction="sum"))


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


def scored_tokens(labels: Tensor) -> Tensor:
    """Tokens a causal LM is scored on: labels after the shift that are not -100."""
    return (labels[:, 1:] != -100).sum()


SEQUENCE_KEYS = ("input_ids", "attention_mask", "labels")
"""The collated tensors with a sequence axis ``[B, L]`` (the others, e.g. ``pixel_values``, are per row)."""


def longest_first(attention_mask: Tensor) -> Tensor:
    """Row indices ``[B]`` by decreasing sequence length (``attention_mask.sum(1)``), ties in batch order."""
    return torch.sort(attention_mask.sum(1), descending=True, stable=True).indices


def trim_padding(micro: dict[str, Tensor]) -> dict[str, Tensor]:
    """``micro`` without the columns that are padding in every row (:data:`SEQUENCE_KEYS` only)."""
    keep = micro["attention_mask"].bool().any(0)
    return {k: v[:, keep] if k in SEQUENCE_KEYS else v for k, v in micro.items()}


def ground_truth_micro_batches(records: Sequence[Any], collate: Callable[[list[Any]], dict[str, Tensor]],
                               global_batch: int, micro_batch_size: int, accelerator: Accelerator,
                               group_by_length: bool = False) -> list[dict[str, Any]]:
    """Collate this process's records and cut them into micro-batches with global normalisers.

    Each micro-batch: the collator's tensors on the device, ``denom`` (scored tokens of the global
    batch / W), ``share`` (``b W / B``) and ``num_tokens`` (non-pad input tokens, for throughput).
    With ``group_by_length`` the rows go longest first and each micro-batch is trimmed to its own
    longest row (module docstring).
    """
    batch = to_device(collate(list(records)), accelerator.device)
    world = accelerator.num_processes
    denom = global_count(scored_tokens(batch["labels"]), accelerator) / world
    if group_by_length:
        order = longest_first(batch["attention_mask"])
        batch = {k: v[order] for k, v in batch.items()}
    micros = []
    for rows in micro_slices(batch["input_ids"].shape[0], micro_batch_size):
        micro = {k: v[rows] for k, v in batch.items()}
        if group_by_length:
            micro = trim_padding(micro)
        n = micro["input_ids"].shape[0]
        micros.append({**micro, "denom": denom, "share": n * world / global_batch,
                       "num_tokens": int(micro["attention_mask"].sum())})
    return micros
