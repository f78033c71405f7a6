"""Helpers for the evaluate tests: small answer files written to ``tmp_path``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[[str, Sequence[object]], Path]:
    """``write_jsonl(name, rows)``: one line per row; a ``str`` row is written verbatim."""

    def write(name: str, rows: Sequence[object]) -> Path:
        path = tmp_path / name
        lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return write
