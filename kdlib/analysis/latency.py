"""Measured latency and peak memory of a model on this machine (the efficiency chapter, beside Table 8).

Table 8 counts parameters and FLOPs; what a user waits for and must fit in memory is measured
here, on the prompts the evaluation uses (GeoChat's, one image each):

- ``forward_ms``: one forward pass of the prompt batch (vision tower, projector, LLM), no cache;
- ``answer_ms``: greedy generation of exactly ``new_tokens`` tokens (``min_new_tokens =
  max_new_tokens``, so a model that stops early is not favoured), divided by the batch size;
- ``ms_per_token``: ``answer_ms / new_tokens``;
- ``weights_mb``: MiB of the parameters and buffers;
- ``peak_memory_mb``: ``weights_mb`` + the largest amount of tensor memory allocated on top of
  them during one generation (activations, KV cache, logits). On CUDA the extra comes from
  ``torch.cuda.max_memory_allocated`` minus the memory allocated before the call; on CPU,
  which has no allocator statistics, from the ``[memory]`` events of ``torch.profiler``
  (``profile_memory=True``): the running sum of allocation sizes (frees are negative) over the
  call, whose maximum is the peak. Both count tensors only, not the Python process.

Times are the minimum over ``repeats`` runs after ``warmup`` runs (CUDA synchronised around each):
other processes can only slow a run down, so the fastest run is the least disturbed one (the
reasoning of Python's ``timeit``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import tempfile
import time
from typing import Any, Callable, Iterator, Sequence

import torch
from transformers import GenerationConfig

from kdlib.data.records import Record
from kdlib.evaluate.generate import generation_collator, greedy_config
from kdlib.models.io import LoadedMLLM

LATENCY_KEYS = ("forward_ms", "answer_ms", "ms_per_token", "new_tokens", "batch_size", "repeats",
                "weights_mb", "peak_memory_mb", "memory_source")
"""Keys of :func:`measure_latency`'s result."""
MIB = 2**20


def weights_mb(model: torch.nn.Module) -> float:
    """MiB held by the parameters and buffers of ``model``."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / MIB


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_ms(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> float:
    """Shortest wall time of ``fn()`` in milliseconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)


KINETO_NOTICE = "USDT:"
"""How the lines start that torch 2.13's profiler back end (kineto) prints from C++ at every profile's start
and stop (``USDT:<date> <pid> SyncActivityProfilerHandler.cpp:52] profiler_start``): notices, not errors."""


@contextlib.contextmanager
def native_stderr_without(prefix: str) -> Iterator[None]:
    """Hold the process's native stderr (file descriptor 2, where C++ writes) for the block and write back
    every line that does not start with ``prefix``: the notices go, any other message still shows."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().splitlines(keepends=True) if not line.startswith(prefix.encode())]
            if kept:
                os.write(2, b"".join(kept))


def cpu_allocation_peak(fn: Callable[[], Any]) -> int:
    """Bytes: the maximum, over ``fn()``, of CPU tensor memory allocated minus memory freed since its start."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with native_stderr_without(KINETO_NOTICE), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == DeviceType.CPU]
    running = itertools.accumulate(e.nbytes() for e in sorted(events, key=lambda e: e.start_ns()))
    return max(itertools.chain([0], running))


def cuda_allocation_peak(fn: Callable[[], Any], device: torch.device) -> int:
    """Bytes: ``max_memory_allocated`` during ``fn()`` minus the memory allocated before it."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def fixed_length_config(tokenizer: Any, new_tokens: int) -> GenerationConfig:
    """Greedy decoding of exactly ``new_tokens`` tokens (EOS does not stop it early)."""
    config = greedy_config(tokenizer, new_tokens)
    config.min_new_tokens = new_tokens
    return config


def prompt_batch(mllm: LoadedMLLM, records: Sequence[Record], device: torch.device) -> dict[str, torch.Tensor]:
    """The evaluation prompts of ``records`` (left-padded, image tokens expanded) on ``device``."""
    batch = generation_collator(mllm)(list(records))
    dtype = next(mllm.model.parameters()).dtype
    return {k: v.to(device, dtype) if k == "pixel_values" else v.to(device) for k, v in batch.items()}


@torch.inference_mode()
def measure_latency(mllm: LoadedMLLM, records: Sequence[Record], new_tokens: int = 16, repeats: int = 5,
                    warmup: int = 1) -> dict[str, Any]:
    """Latency and peak memory of ``mllm`` answering ``records`` as one batch (keys :data:`LATENCY_KEYS`).

    The model runs where its weights are, in eval mode.
    """
    if new_tokens < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need new_tokens >= 1, repeats >= 1, warmup >= 0; got {new_tokens}, {repeats}, {warmup}")
    if not records:
        raise ValueError("measure_latency needs at least one record")
    model = mllm.model.eval()
    device = next(model.parameters()).device
    batch = prompt_batch(mllm, records, device)
    config = fixed_length_config(mllm.tokenizer, new_tokens)

    def forward() -> Any:
        return model(**batch, use_cache=False)

    def answer() -> Any:
        return model.generate(**batch, generation_config=config)

    size = len(records)
    answer_ms = best_ms(answer, device, repeats, warmup) / size
    if device.type == "cuda":
        extra, source = cuda_allocation_peak(answer, device), "torch.cuda.max_memory_allocated"
    else:
        extra, source = cpu_allocation_peak(answer), "torch.profiler CPU [memory] events"
    weights = weights_mb(model)
    return {"forward_ms": best_ms(forward, device, repeats, warmup), "answer_ms": answer_ms,
            "ms_per_token": answer_ms / new_tokens, "new_tokens": new_tokens, "batch_size": size,
            "repeats": repeats, "weights_mb": weights, "peak_memory_mb": weights + extra / MIB,
            "memory_source": source}


def latency_ratios(student: dict[str, Any], teacher: dict[str, Any]) -> dict[str, float]:
    """``student / teacher`` of every timed or memory key (below 1: the student is cheaper)."""
    keys = ("forward_ms", "answer_ms", "ms_per_token", "weights_mb", "peak_memory_mb")
    return {k: student[k] / teacher[k] for k in keys}
