"""Plain Hugging Face causal LMs as teacher and student (text-only distillation).

Either model is a hub id or a folder (``AutoModelForCausalLM``; an id ``org/name`` is looked up
under ``$KDLIB_MODEL_ROOT`` first, :func:`kdlib.paths.resolve_model`). Token-level distillation
compares the two next-token distributions entry by entry, so the pair must share one tokenizer:
:func:`load_causal_pair` checks the two tokenizers' token -> id maps and the models' vocabulary
sizes, and raises a one-line error naming both models when they differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kdlib.models.vocab import check_same_vocab
from kdlib.paths import resolve_model


@dataclass(frozen=True)
class CausalPair:
    """A teacher, a student and their shared tokenizer (the student's, pad token set)."""

    teacher: Any
    student: Any
    tokenizer: Any


def load_tokenizer(name: str | Path) -> Any:
    """The model's tokenizer, with EOS as pad token when it has none."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(str(name)))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_pair(teacher: Any, student: Any, teacher_name: str, student_name: str) -> None:
    """``ValueError`` (one line, naming both models) unless the two tokenizers or models share a vocabulary."""
    try:
        check_same_vocab(teacher, student)
    except ValueError as err:
        raise ValueError(f"teacher {teacher_name} and student {student_name} do not share a tokenizer: {err}") from None


def load_causal_pair(teacher: str | Path, student: str | Path, dtype: torch.dtype = torch.float32) -> CausalPair:
    """Load ``teacher`` and ``student`` (ids or folders) after checking that their tokenizers agree."""
    t_tok, s_tok = load_tokenizer(teacher), load_tokenizer(student)
    check_pair(t_tok, s_tok, str(teacher), str(student))
    models = [AutoModelForCausalLM.from_pretrained(resolve_model(str(name)), dtype=dtype) for name in (teacher, student)]
    check_pair(*models, str(teacher), str(student))
    return CausalPair(models[0], models[1], s_tok)
