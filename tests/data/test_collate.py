"""The collator: image tokens expanded, labels only on answer + eos, padding sides, truncation."""

from __future__ import annotations

import pytest
import torch

from kdlib.data import IGNORE_INDEX, Collator, load_image, render_turn, to_conversation
from kdlib.data.prompts import human_value

N_IMAGE = 16


def _one_per_task(study):
    seen = {}
    for rec in study.train:
        seen.setdefault(rec.task, rec)
    return list(seen.values())


def _prompt_ids(tokenizer, rec) -> list[int]:
    """Second formulation: the prompt tokenised on its own (BOS added by the tokenizer), image expanded."""
    prompt, _ = render_turn(human_value(rec.question), rec.answer)
    ids = tokenizer(prompt)["input_ids"]
    at = ids.index(tokenizer.convert_tokens_to_ids("<image>"))
    return ids[:at] + [ids[at]] * N_IMAGE + ids[at + 1:]


def test_train_batch_labels_only_answer_and_eos(tiny_study, tokenizer, image_processor):
    records = _one_per_task(tiny_study)
    assert len(records) == 6
    batch = Collator(tokenizer, image_processor, N_IMAGE, max_length=256)(records)
    assert batch["pixel_values"].shape == (6, 3, 64, 64) and batch["pixel_values"].dtype == torch.float32
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    for row, rec in enumerate(records):
        ids, labels, mask = (batch[k][row] for k in ("input_ids", "labels", "attention_mask"))
        assert int((ids == image_id).sum()) == N_IMAGE
        kept = labels[labels != IGNORE_INDEX]
        assert tokenizer.decode(kept) == f" {rec.answer}</s>"
        prompt = _prompt_ids(tokenizer, rec)
        answer = tokenizer(f" {rec.answer}", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        n = int(mask.sum())
        assert ids[:n].tolist() == prompt + answer
        assert labels[:n].tolist() == [IGNORE_INDEX] * len(prompt) + answer
        assert mask[:n].all() and not mask[n:].any() and (labels[n:] == IGNORE_INDEX).all()  # right padding
        assert (ids[n:] == tokenizer.pad_token_id).all()


def test_generate_batch_left_padded_prompt_only(tiny_study, tokenizer, image_processor):
    records = _one_per_task(tiny_study)
    batch = Collator(tokenizer, image_processor, N_IMAGE, max_length=256, mode="generate")(records)
    assert "labels" not in batch
    for row, rec in enumerate(records):
        mask = batch["attention_mask"][row]
        n = int(mask.sum())
        assert mask[-n:].all() and not mask[:-n].any()
        assert batch["input_ids"][row, -n:].tolist() == _prompt_ids(tokenizer, rec)


def test_truncation_cuts_the_answer_keeps_the_prompt(tiny_study, tokenizer, image_processor):
    rec = next(r for r in tiny_study.train if r.task == "caption")
    prompt = _prompt_ids(tokenizer, rec)
    text_prompt = len(prompt) - N_IMAGE
    batch = Collator(tokenizer, image_processor, N_IMAGE, max_length=text_prompt + 2)([rec])
    assert batch["input_ids"][0].tolist()[: len(prompt)] == prompt
    assert batch["input_ids"].shape[1] == len(prompt) + 2
    assert int((batch["labels"] != IGNORE_INDEX).sum()) == 2
    with pytest.raises(ValueError, match=rf"item {rec.id}: its prompt has {text_prompt} text tokens"):
        Collator(tokenizer, image_processor, N_IMAGE, max_length=text_prompt - 1)([rec])


def test_multi_turn_conversation_dict(tiny_study, tokenizer, image_processor):
    rec = next(r for r in tiny_study.train if r.task == "vqa")
    conv = to_conversation(rec)
    conv["conversations"] += [{"from": "human", "value": "And the colour?"}, {"from": "gpt", "value": "green"}]
    batch = Collator(tokenizer, image_processor, N_IMAGE, max_length=256)([conv])
    kept = batch["labels"][0][batch["labels"][0] != IGNORE_INDEX]
    assert tokenizer.decode(kept) == f" {rec.answer}</s> green</s>"
    second_prompt = tokenizer.decode(batch["input_ids"][0][batch["labels"][0] == IGNORE_INDEX])
    assert second_prompt.endswith("USER: And the colour? ASSISTANT:")


def test_tile_records_are_cropped(tiny_study, tokenizer, image_processor):
    rec = next(r for r in tiny_study.train if r.dataset == "dota")
    left, top, right, bottom = rec.meta["crop"]
    assert load_image(rec).size == (right - left, bottom - top)
    batch = Collator(tokenizer, image_processor, N_IMAGE, max_length=256)([rec])
    expected = image_processor(images=[load_image(rec)], return_tensors="pt")["pixel_values"]
    assert torch.equal(batch["pixel_values"], expected.float())


def test_collator_rejects_bad_setup(tokenizer, image_processor):
    with pytest.raises(ValueError, match="mode"):
        Collator(tokenizer, image_processor, N_IMAGE, 64, mode="eval")
    with pytest.raises(ValueError, match="empty batch"):
        Collator(tokenizer, image_processor, N_IMAGE, 64)([])
