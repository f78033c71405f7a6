"""Batched greedy generation of a kdlib model on :class:`~kdlib.data.records.Record` s.

GeoChat's eval scripts (``geochat/eval/batch_geochat_*.py``) decode greedily
(``do_sample=False``, ``num_beams=1``) from the prompt ``{SYSTEM} USER: <image>\\n{query}
ASSISTANT:``, ``max_new_tokens=256``. kdlib does the same with the generate-mode
:class:`~kdlib.data.collate.Collator` (left padding *with* an attention mask, which GeoChat's
batched script lacks, so batches give the answers of one-by-one decoding):

    y_t = argmax_v  log p(v | y_<t, x),   t = 1 .. T,  stop at </s> or T = max_new_tokens

Two paths give these answers: :func:`padded_batches` feeds whole left-padded prompts to
``generate``; :func:`shared_prefix_batches` (the default of :func:`generate_answers`) computes the
system line once per call and each picture once for all its questions, then decodes with its own
cached loop (:mod:`kdlib.evaluate.shared_prefix`): RSVQA carries ~100 questions per picture.

An answer is the generated ids after the prompt, cut at the first ``</s>``, decoded without
special tokens and stripped of surrounding white space.

The budget ``T`` per task is :func:`answer_budget`: twice the longest reference answer (in the
model's own tokens) plus 8, at most GeoChat's 256. A greedy answer ends at ``</s>``, so the cap
only shortens answers that already run past twice the longest reference (wrong for exact-match
tasks); it keeps random ``tiny`` models, which rarely stop, cheap. Pass ``max_new_tokens=256``
for GeoChat's protocol exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig

from kdlib.data.collate import Collator
from kdlib.data.records import Record
from kdlib.evaluate.shared_prefix import caches_prefixes, greedy_batches
from kdlib.models.features import num_image_tokens
from kdlib.models.io import LoadedMLLM

GEOCHAT_MAX_NEW_TOKENS = 256
"""``max_new_tokens`` of every GeoChat eval script."""
PROMPT_MAX_LENGTH = 2048
"""Text tokens a prompt may have (GeoChat's ``model_max_length``); prompts are never cut."""


def answer_budget(references: Sequence[str], tokenizer: Any, cap: int = GEOCHAT_MAX_NEW_TOKENS) -> int:
    """``min(cap, 2 L + 8)`` with ``L`` the longest reference answer in ``tokenizer``'s tokens (+ eos)."""
    if not references:
        raise ValueError("answer_budget needs at least one reference answer")
    longest = max(len(tokenizer(f" {text}", add_special_tokens=False)["input_ids"]) + 1 for text in references)
    return min(cap, 2 * longest + 8)


def greedy_config(tokenizer: Any, max_new_tokens: int) -> GenerationConfig:
    """Greedy decoding that stops at the tokenizer's eos and pads with its pad token."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                            bos_token_id=tokenizer.bos_token_id)


def decode_answers(tokenizer: Any, new_tokens: torch.Tensor) -> list[str]:
    """Answers from generated ids ``[B, T]`` (prompt removed): cut at the first eos, special
    tokens dropped, white space stripped."""
    answers = []
    for row in new_tokens.tolist():
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id)]
        answers.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return answers


def generation_collator(mllm: LoadedMLLM) -> Collator:
    """The generate-mode collator (left padding, attention mask) for ``mllm``'s image tokens."""
    return Collator(mllm.tokenizer, mllm.image_processor, num_image_tokens(mllm.model), PROMPT_MAX_LENGTH,
                    mode="generate")


@torch.inference_mode()
def generate_batch(model: Any, tokenizer: Any, batch: dict[str, torch.Tensor], config: GenerationConfig) -> list[str]:
    """Greedy answers of one collated batch (``input_ids``, ``attention_mask`` ``[B, P]``,
    ``pixel_values`` ``[B, 3, S, S]``), run on the model's device and dtype."""
    batch = {k: v.to(model.device) for k, v in batch.items()}
    batch["pixel_values"] = batch["pixel_values"].to(model.dtype)
    out = model.generate(**batch, generation_config=config)
    return decode_answers(tokenizer, out[:, batch["input_ids"].shape[1]:])


def padded_batches(mllm: LoadedMLLM, records: Sequence[Record], config: GenerationConfig,
                   batch_size: int) -> Iterator[tuple[list[int], list[str]]]:
    """``(record indices, answers)`` of whole left-padded prompts through ``generate``, ``batch_size``
    at a time, longest questions first (little padding)."""
    collate = generation_collator(mllm)
    order = sorted(range(len(records)), key=lambda i: -len(records[i].question))
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        yield chosen, generate_batch(mllm.model, mllm.tokenizer, collate([records[i] for i in chosen]), config)


def shared_prefix_batches(mllm: LoadedMLLM, records: Sequence[Record], config: GenerationConfig,
                          batch_size: int) -> Iterator[tuple[list[int], list[str]]]:
    """``(record indices, answers)`` with each shared prompt prefix computed once
    (:func:`kdlib.evaluate.shared_prefix.greedy_batches`)."""
    tokenizer = mllm.tokenizer
    for chosen, tokens in greedy_batches(mllm.model, generation_collator(mllm), records, config.max_new_tokens,
                                         batch_size, tokenizer.eos_token_id, tokenizer.pad_token_id):
        yield chosen, decode_answers(tokenizer, tokens)


def generate_answers(mllm: LoadedMLLM, records: Sequence[Record], max_new_tokens: int, batch_size: int = 8,
                     progress: bool = True, desc: str = "generate", shared_prefix: bool = True) -> list[str]:
    """Greedy answers to ``records`` (in their order), ``batch_size`` prompts at a time.

    ``shared_prefix`` (the default) takes :func:`shared_prefix_batches`, the system line once per
    call and each picture once for all its questions, when the model allows it
    (:func:`~kdlib.evaluate.shared_prefix.caches_prefixes`); otherwise, or with False,
    :func:`padded_batches` sends every prompt whole through the model's ``generate``. Both give the
    same answers (up to floating-point rounding on near ties). The model is put in eval mode.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    mllm.model.eval()
    config = greedy_config(mllm.tokenizer, max_new_tokens)
    fast = shared_prefix and caches_prefixes(mllm.model)
    batches = (shared_prefix_batches if fast else padded_batches)(mllm, records, config, batch_size)
    answers: list[str] = [""] * len(records)
    total = math.ceil(len(records) / batch_size)
    for chosen, batch_answers in tqdm(batches, total=total, desc=desc, disable=not progress, unit="batch"):
        for i, answer in zip(chosen, batch_answers):
            answers[i] = answer
    return answers
