"""Batched greedy generation: left-padded batches answer as one-by-one decoding and as kdlib's own
token loop (:func:`kdlib.sampling.mixed_sample` at ``alpha = 0``, greedy)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from kdlib.data.prompts import vqa_query
from kdlib.data.records import Record
from kdlib.evaluate.generate import (answer_budget, decode_answers, generate_answers, generate_batch,
                                     generation_collator, greedy_config)
from kdlib.models.io import LoadedMLLM
from kdlib.sampling import mixed_sample

QUESTIONS = ("Is there a road?", "How many buildings are there in the image?", "Is it rural or urban?",
             "Are there more water areas than commercial buildings in the picture?", "Is a farmland present?")
ANSWERS = ("yes", "12", "rural", "no", "yes")


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[Record]:
    folder = tmp_path_factory.mktemp("images")
    out = []
    for i, (question, answer) in enumerate(zip(QUESTIONS, ANSWERS)):
        path = folder / f"{i}.png"
        Image.new("RGB", (40 + 8 * i, 48), (30 * i, 200 - 30 * i, 90)).save(path)
        out.append(Record(id=f"q{i}", task="vqa", image=path, question=vqa_query(question), answer=answer,
                          meta={"dataset": "rsvqa_lr", "type": "presence", "question_id": i}))
    return out


@pytest.fixture(scope="module")
def mllm(records: list[Record], tiny_teacher) -> LoadedMLLM:
    return tiny_teacher(records, 3)


def test_batched_left_padded_answers_equal_one_by_one(mllm: LoadedMLLM, records: list[Record]) -> None:
    batched = generate_answers(mllm, records, max_new_tokens=6, batch_size=3, progress=False)
    single = [generate_answers(mllm, [r], max_new_tokens=6, batch_size=1, progress=False)[0] for r in records]
    assert batched == single
    assert any(batched), "a random model should produce some text within 6 tokens"


def test_generate_matches_kdlib_token_loop(mllm: LoadedMLLM, records: list[Record]) -> None:
    batch = generation_collator(mllm)(records)
    assert (batch["attention_mask"][:, 0] == 0).any(), "prompts of different lengths must be left-padded"
    tokenizer = mllm.tokenizer
    ours = generate_batch(mllm.model, tokenizer, batch, greedy_config(tokenizer, 5))
    rollout = mixed_sample(mllm.model, mllm.model, batch, max_new_tokens=5, eos_token_id=tokenizer.eos_token_id,
                           pad_token_id=tokenizer.pad_token_id, alpha=0.0, do_sample=False)
    assert ours == decode_answers(tokenizer, rollout.tokens)


def test_decode_cuts_at_eos_and_drops_special_tokens(mllm: LoadedMLLM) -> None:
    tok = mllm.tokenizer
    words = tok(" rural area", add_special_tokens=False)["input_ids"]
    first = [tok.bos_token_id, *words, tok.eos_token_id, *words]
    rows = torch.tensor([first, [*words] + [tok.pad_token_id] * (len(first) - len(words))])
    assert decode_answers(tok, rows) == ["rural area", "rural area"]


def test_answer_budget_covers_references_and_respects_cap(mllm: LoadedMLLM) -> None:
    references = ["yes", "a large parking lot next to a road"]
    longest = max(len(mllm.tokenizer(f" {r}", add_special_tokens=False)["input_ids"]) for r in references)
    assert answer_budget(references, mllm.tokenizer) > longest
    assert answer_budget(references, mllm.tokenizer, cap=3) == 3
    with pytest.raises(ValueError, match="at least one reference"):
        answer_budget([], mllm.tokenizer)


def test_bad_arguments_are_refused(mllm: LoadedMLLM, records: list[Record]) -> None:
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_config(mllm.tokenizer, 0)
    with pytest.raises(ValueError, match="batch_size"):
        generate_answers(mllm, records, max_new_tokens=2, batch_size=0, progress=False)


def test_images_are_needed(mllm: LoadedMLLM, tmp_path: Path) -> None:
    record = Record(id="x", task="vqa", image=tmp_path / "absent.png", question=vqa_query("Is it?"), answer="no",
                    meta={"dataset": "rsvqa_lr"})
    with pytest.raises(FileNotFoundError):
        generate_answers(mllm, [record], max_new_tokens=2, progress=False)
