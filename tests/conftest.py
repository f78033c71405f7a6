"""Shared fixtures: the real data root (skipped cleanly when ../shared/data is absent)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kdlib.paths import default_data_root

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = default_data_root()
    if root is None or not root.is_dir():
        pytest.skip("real data absent: set KDLIB_DATA or place the data in ../shared/data (see kdlib.paths.DATA_SOURCES)")
    return root


@pytest.fixture(scope="session")
def tiny_book(tmp_path_factory, data_root) -> tuple[Path, int]:
    """One ``kdlib reproduce --profile tiny`` per test session: (its output folder, its exit status).

    Shared by the reproduce test (every page built) and the browser test (every page readable), so
    the book is executed and built once.
    """
    from jupyter_client.kernelspec import find_kernel_specs

    kernel = "kdlib" if "kdlib" in find_kernel_specs() else "python3"
    out = tmp_path_factory.mktemp("book") / "tiny"
    proc = subprocess.run([sys.executable, "-m", "kdlib.cli", "reproduce", "--profile", "tiny", "--data-root",
                           str(data_root), "--out", str(out), "--kernel", kernel, "--no-progress"], text=True)
    return out, proc.returncode


@pytest.fixture
def bf16_agrees_with_float32():
    """``check(objective, micros, cfg)``: one step of ``objective`` on ``micros`` under ``dtype="bfloat16"``
    (autocast from :func:`kdlib.train.harness.make_accelerator` on the CPU) agrees with float32.

    Stated tolerance (bf16 keeps 8 bits of mantissa; weights and loss stay float32): the loss within 1 %
    relative, the whole gradient at cosine >= 0.99 with a norm within 5 % (both in float64: a float32
    cosine over 10^8 entries can exceed 1). Autocast must have moved the gradient (relative change
    > 1e-5; fp32 reordering alone gives about 1e-7), so a silently float32 run fails.
    """
    import dataclasses

    from kdlib.train.harness import make_accelerator

    def step(objective, micros):
        objective.zero_grad()
        loss = sum(objective(dict(m))["loss"] for m in micros)
        loss.backward()
        return loss.detach(), torch.cat([p.grad.flatten() for p in objective.parameters() if p.grad is not None])

    def check(objective, micros, cfg) -> None:
        steps = {}
        for dtype in ("float32", "bfloat16"):
            accelerator = make_accelerator(dataclasses.replace(cfg, dtype=dtype), "cpu")
            assert accelerator.mixed_precision == ("bf16" if dtype == "bfloat16" else "no")
            with accelerator.autocast():
                steps[dtype] = step(objective, micros)
        (loss32, g32), (loss16, g16) = steps["float32"], steps["bfloat16"]
        assert loss16.dtype == torch.float32
        torch.testing.assert_close(loss16, loss32, rtol=1e-2, atol=0)
        g32, g16 = g32.double(), g16.double()
        assert torch.nn.functional.cosine_similarity(g16, g32, dim=0) >= 0.99
        assert abs(g16.norm() / g32.norm() - 1) <= 0.05
        assert (g16 - g32).norm() / g32.norm() > 1e-5

    return check
