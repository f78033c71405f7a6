"""Latency and memory measurement: documented keys, positive numbers, an exact allocation peak."""

from __future__ import annotations

import torch

from kdlib.analysis.latency import (LATENCY_KEYS, cpu_allocation_peak, latency_ratios, measure_latency,
                                    native_stderr_without, weights_mb)


def test_cpu_allocation_peak_counts_live_tensors():
    mib = 2**20

    def two_at_once():
        a = torch.empty(mib // 4, dtype=torch.float32)  # 1 MiB
        b = torch.empty(mib // 2, dtype=torch.float32)  # 2 MiB, while a is alive
        del a, b
        c = torch.empty(mib // 4, dtype=torch.float32)  # 1 MiB after both are freed
        del c

    assert cpu_allocation_peak(two_at_once) == 3 * mib


def test_the_memory_profile_prints_no_profiler_notices(capfd):
    cpu_allocation_peak(lambda: torch.ones(8) @ torch.ones(8))
    assert "profiler_start" not in capfd.readouterr().err  # torch 2.13's kineto prints USDT lines from C++


def test_native_stderr_without_keeps_every_other_line(capfd):
    import os

    with native_stderr_without("USDT:"):
        os.write(2, b"USDT: a notice\nan error that matters\n")
    assert capfd.readouterr().err == "an error that matters\n"


def test_measure_latency_keys_and_values(student, teacher, records):
    results = {m: measure_latency(mllm, records[:1], new_tokens=3, repeats=2, warmup=1)
               for m, mllm in (("student", student), ("teacher", teacher))}
    for result in results.values():
        assert tuple(result) == LATENCY_KEYS
        assert min(result[k] for k in ("forward_ms", "answer_ms", "ms_per_token", "weights_mb")) > 0
        assert result["peak_memory_mb"] > result["weights_mb"]
        assert result["ms_per_token"] * 3 == result["answer_ms"]
    assert results["student"]["weights_mb"] == weights_mb(student.model) < weights_mb(teacher.model)
    ratios = latency_ratios(results["student"], results["teacher"])
    assert ratios["weights_mb"] < 1 and set(ratios) <= set(LATENCY_KEYS)
