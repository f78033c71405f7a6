"""Shared-prefix greedy decoding: the prompt cut rebuilds every prompt, the cached chain of forwards
gives the logits of one whole forward, and the answers equal those of ``generate`` on whole prompts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from kdlib.data.instructions import to_conversation
from kdlib.data.prompts import scene_query, vqa_query
from kdlib.data.records import Record
from kdlib.evaluate.generate import generate_answers, generation_collator
from kdlib.evaluate.shared_prefix import (caches_prefixes, extend, greedy_continue, picture_caches, plan_prompts,
                                          suffix_state)
from kdlib.models.io import LoadedMLLM
from kdlib.sampling import next_token_logits, position_ids

QUESTIONS = ("Is there a road?", "How many buildings are there in the image?", "Is it rural or urban?",
             "Are there more water areas than commercial buildings in the picture?", "Is a farmland present?",
             "Is the number of roads equal to the number of water areas?", "Is there a building?")
SHARP_STD = 0.15  # a random LLM at the usual 0.02 answers almost the same to every prompt
CLASSES = ("beach", "dense residential", "forest", "harbor", "parking lot")


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[Record]:
    """Three pictures asked several questions each (one also as a crop), interleaved, and three scene
    records alone on their pictures."""
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i in range(6):
        paths.append(folder / f"{i}.png")
        Image.new("RGB", (40 + 8 * i, 48), (40 * i, 200 - 30 * i, 90 + 10 * i)).save(paths[-1])
    out = []
    for j, question in enumerate(QUESTIONS * 2):
        picture = j % 3
        meta = {"dataset": "rsvqa_lr", "type": "presence", "question_id": j}
        if j == 13:
            meta["crop"] = (0, 0, 24, 24)
        out.append(Record(id=f"v{j}", task="vqa", image=paths[picture], question=vqa_query(question),
                          answer="yes", meta=meta))
    for i in range(3, 6):
        out.append(Record(id=f"s{i}", task="scene", image=paths[i], question=scene_query(CLASSES[: i]),
                          answer=CLASSES[0], meta={"dataset": "ucmerced"}))
    return out


@pytest.fixture(scope="module")
def mllm(records: list[Record], tiny_teacher) -> LoadedMLLM:
    mllm = tiny_teacher(records, 5)
    model = mllm.model
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():  # weights large enough that every token and position changes the answers
        for name, weight in model.named_parameters():
            if "language_model" in name and weight.dim() == 2 and "embed" not in name:
                weight.copy_(torch.randn(weight.shape, generator=generator) * SHARP_STD)
    return mllm


def test_plan_rebuilds_every_prompt_and_shares_pictures(mllm: LoadedMLLM, records: list[Record]) -> None:
    collate = generation_collator(mllm)
    plan = plan_prompts(collate, records)
    image = collate.image_token_id
    assert plan.head and image not in plan.head
    for i, record in enumerate(records):
        part, suffix = plan.pictures[plan.picture_of[i]], plan.suffixes[i]
        assert plan.head + part + suffix == collate.encode(to_conversation(record))[0]
        assert (part + suffix).count(image) == collate.num_image_tokens and suffix and suffix[-1] != image
        assert (image in suffix) == (not part) == (record.task == "scene" or record.id == "v13")
    vqa = [plan.picture_of[i] for i, r in enumerate(records) if r.task == "vqa"]
    assert len(set(vqa)) == 4, "three pictures, and the crop of one of them is a fourth"
    assert len(set(plan.picture_of)) == 7
    order = plan.order()
    assert sorted(order) == list(range(len(records)))
    assert [records[i].id for i in order[-4:]] == ["s5", "s4", "s3", "v13"], "alone last, longer suffixes first"


def test_cached_chain_gives_the_logits_of_one_whole_forward(mllm: LoadedMLLM, records: list[Record]) -> None:
    """head -> picture parts -> suffixes (padding in the gaps, one record alone on its picture)
    against one forward on the left-padded whole prompts."""
    collate = generation_collator(mllm)
    chosen = [records[0], records[3], records[1], records[4], records[-1]]
    plan = plan_prompts(collate, chosen)
    model, pad = mllm.model, mllm.tokenizer.pad_token_id
    with torch.inference_mode():
        head = extend(model, [None], [plan.head], pad).rows()[0]
        shared = [g for g in sorted(set(plan.picture_of)) if plan.pictures[g]]
        assert len(shared) == 2 and len(set(plan.picture_of)) == 3
        cached = picture_caches(model, collate, plan, shared, head, pad)
        ours = suffix_state(model, collate, plan, range(len(chosen)), head, cached, pad).logits
        batch = collate(chosen)
        assert (batch["attention_mask"] == 0).any(), "the whole prompts must differ in length"
        whole, _ = next_token_logits(model, batch["input_ids"], batch["attention_mask"],
                                     position_ids(batch["attention_mask"]), pixel_values=batch["pixel_values"])
    assert ours.shape == whole.shape
    torch.testing.assert_close(ours, whole, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch_size", [1, 4, 7])
def test_shared_prefix_answers_equal_generate_on_whole_prompts(mllm: LoadedMLLM, records: list[Record],
                                                               batch_size: int) -> None:
    fast = generate_answers(mllm, records, max_new_tokens=6, batch_size=batch_size, progress=False)
    plain = generate_answers(mllm, records, max_new_tokens=6, batch_size=batch_size, progress=False,
                             shared_prefix=False)
    assert fast == plain
    assert len(set(fast)) > len(records) // 2, "the answers must depend on the prompts for the test to mean anything"


def test_no_records_no_answers(mllm: LoadedMLLM) -> None:
    assert generate_answers(mllm, [], max_new_tokens=2, progress=False) == []
    with pytest.raises(ValueError, match="at least one record"):
        plan_prompts(generation_collator(mllm), [])


def test_bad_arguments_are_refused(mllm: LoadedMLLM) -> None:
    pad = mllm.tokenizer.pad_token_id
    with pytest.raises(ValueError, match="at least one token"):
        extend(mllm.model, [None, None], [[1, 2], []], pad)
    with torch.inference_mode():
        state = extend(mllm.model, [None], [[1, 2]], pad)
        with pytest.raises(ValueError, match="max_new_tokens"):
            greedy_continue(mllm.model, state, 0, mllm.tokenizer.eos_token_id, pad)


def test_only_plain_llava_models_take_the_cached_path(mllm: LoadedMLLM) -> None:
    class EditsPrompt(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

    assert caches_prefixes(mllm.model)
    assert not caches_prefixes(EditsPrompt(mllm.model))
