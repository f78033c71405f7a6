"""Shared fixtures: the real data root (skipped cleanly when ../shared/data is absent)."""

from __future__ import annotations

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
