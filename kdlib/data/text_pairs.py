"""Prompt/response records for distilling plain causal LMs, and the batches made from them.

A :class:`TextPair` is one prompt and its reference response. They come from a JSONL file (one
object per line with string fields ``prompt`` and ``response``; blank lines skipped) or from a
``datasets`` dataset (or any iterable of mappings) with those two columns. Readers are
all-or-nothing: the first bad line raises :class:`~kdlib.data.records.DataError` naming the file
and the line.

:class:`TextCollator` is the text-only counterpart of :class:`~kdlib.data.collate.Collator` (same
call, same ``mode`` and padding rules, no ``pixel_values``). A prompt is rendered with the
tokenizer's chat template when it has one (one user turn, generation prompt added), else as
``<special prefix> prompt \\n``; the response follows, closed by EOS:

    [prompt tokens, labels -100] [response tokens + EOS, labelled]

``max_length`` bounds the whole sequence; the prompt must fit whole (else ``ValueError`` naming
the record), the response loses its tail.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdlib.data.collate import IGNORE_INDEX, MODES, pad_sequences, special_prefix
from kdlib.data.records import data_error

FIELDS = ("prompt", "response")


@dataclass(frozen=True)
class TextPair:
    """One training record of a text-only run: the prompt and the reference response."""

    prompt: str
    response: str


def _pair(row: Any, where: str, source: str) -> TextPair:
    if not isinstance(row, Mapping):
        raise data_error(source, where, f"expected an object with {' and '.join(FIELDS)}, got {type(row).__name__}")
    for name in FIELDS:
        if not isinstance(row.get(name), str):
            raise data_error(source, where, f"field {name!r} must be a string, got {row.get(name)!r:.60}")
    if not row["prompt"].strip():
        raise data_error(source, where, "empty prompt")
    return TextPair(row["prompt"], row["response"])


def read_text_pairs(path: str | Path) -> list[TextPair]:
    """Every record of a JSONL file of ``{"prompt": ..., "response": ...}`` objects, in order."""
    path = Path(path)
    if not path.is_file():
        raise data_error(path, "", "no such file")
    pairs = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise data_error(path, f"line {number}", f"not valid JSON ({err.msg})") from None
            pairs.append(_pair(row, f"line {number}", str(path)))
    if not pairs:
        raise data_error(path, "", "no records")
    return pairs


def load_text_pairs(source: str | Path | Iterable[Mapping[str, Any]] | Sequence[TextPair]) -> list[TextPair]:
    """Records from a JSONL path, from ``TextPair`` objects, or from rows with ``prompt``/``response``
    (a ``datasets.Dataset`` iterates as such rows)."""
    if isinstance(source, (str, Path)):
        return read_text_pairs(source)
    name = type(source).__name__
    pairs = [row if isinstance(row, TextPair) else _pair(row, f"row {i}", name) for i, row in enumerate(source)]
    if not pairs:
        raise data_error(name, "", "no records")
    return pairs


@dataclass
class TextCollator:
    """Callable turning a list of :class:`TextPair` into causal-LM inputs (module docstring)."""

    tokenizer: Any
    max_length: int
    mode: str = "train"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"TextCollator mode {self.mode!r}: choose one of {MODES}")
        if self.max_length < 1:
            raise ValueError("max_length must be >= 1")
        if self.tokenizer.pad_token_id is None or self.tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer needs a pad token and an eos token")
        self.prefix = special_prefix(self.tokenizer)

    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of the prompt as the model sees it before answering."""
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.prefix + self.tokenizer(prompt + "\n", add_special_tokens=False)["input_ids"]

    def encode(self, pair: TextPair, index: int) -> tuple[list[int], list[int]]:
        """``(input_ids, labels)`` of one record, truncated to ``max_length``."""
        prompt = self.prompt_ids(pair.prompt)
        if len(prompt) > self.max_length:
            raise ValueError(f"record {index}: its prompt has {len(prompt)} tokens, more than max_length "
                             f"{self.max_length}; raise data.max_length")
        if self.mode == "generate":
            return prompt, [IGNORE_INDEX] * len(prompt)
        answer = self.tokenizer(pair.response, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        ids = (prompt + answer)[:self.max_length]
        return ids, ([IGNORE_INDEX] * len(prompt) + answer)[:self.max_length]

    def __call__(self, items: Sequence[TextPair]) -> dict[str, torch.Tensor]:
        if not items:
            raise ValueError("cannot collate an empty batch")
        encoded = [self.encode(pair, i) for i, pair in enumerate(items)]
        return pad_sequences(encoded, self.tokenizer.pad_token_id, self.mode)
