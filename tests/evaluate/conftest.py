"""Helpers for the evaluate tests: small answer files written to ``tmp_path``, tiny models fitted to records."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from kdlib.data.prompts import chat_text
from kdlib.data.records import Record
from kdlib.models.build import build_pair
from kdlib.models.io import LoadedMLLM
from kdlib.models.tokenizer import build_tokenizer
from kdlib.profiles import get_profile


def _tiny_teacher(records: Sequence[Record], seed: int) -> LoadedMLLM:
    profile = get_profile("tiny")
    tokenizer = build_tokenizer([chat_text(r.question, r.answer) for r in records] * 3, profile.vocab_size)
    pair = build_pair(profile, tokenizer, seed=seed)
    return LoadedMLLM(pair.teacher.eval(), tokenizer, pair.image_processor)


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[[str, Sequence[object]], Path]:
    """``write_jsonl(name, rows)``: one line per row; a ``str`` row is written verbatim."""

    def write(name: str, rows: Sequence[object]) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def tiny_teacher() -> Callable[[Sequence[Record], int], LoadedMLLM]:
    """``tiny_teacher(records, seed)``: the ``tiny`` teacher (random, seeded) with a tokenizer fitted
    to the records' chat texts."""
    return _tiny_teacher
