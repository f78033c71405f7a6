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
