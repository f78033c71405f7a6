"""Masks, hidden states and the Fig. 2 profile of a model on a collated batch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kdlib.analysis.layers import (ALIGN_KD_FIG2, batched_profile, claim_verdict, collect_layer_states, compare_with_paper,
                                   describe_ends, ends_stand_out, ends_verdicts, layer_profile, mixed_records,
                                   profile_frame, shift_towards, special_token_ids, token_masks)
from kdlib.evaluate.generate import generation_collator
from kdlib.models import num_image_tokens


def test_masks_of_a_collated_batch_mark_exactly_the_image_tokens(student, records):
    batch = generation_collator(student)(records)  # left-padded prompts of different lengths
    ids, attn = batch["input_ids"], batch["attention_mask"]
    assert (attn == 0).any(), "the fixture's prompts should differ in length"
    image_id = student.model.config.image_token_id
    specials = special_token_ids(student.tokenizer)
    vision, text = token_masks(ids, attn, image_id, specials)
    n = num_image_tokens(student.model)
    assert vision.sum(1).tolist() == [n] * len(records)
    for row in range(len(records)):
        real = ids[row][attn[row].bool()].tolist()
        expected_text = [t for t in real if t != image_id and t not in specials]
        assert ids[row][text[row]].tolist() == expected_text
        assert ids[row][vision[row]].tolist() == [image_id] * n
    assert not (vision & text).any()
    assert student.tokenizer.bos_token_id in specials and image_id not in specials


def test_profile_lengths_and_a_direct_recomputation(student, records):
    batch = generation_collator(student)(records[:2])
    states = collect_layer_states(student.model, batch, special_token_ids(student.tokenizer))
    layers = student.model.config.text_config.num_hidden_layers
    assert states.num_layers == layers
    curves = layer_profile(states)
    assert [len(curves[k]) for k in ("adjacent_cosine", "vision_text_cosine", "vision_text_distance")] == \
        [layers, layers + 1, layers + 1]
    # (a) recomputed token by token for the last layer, averaged over both samples' real tokens
    h0, h1 = states.hidden_states[-2], states.hidden_states[-1]
    cos = [F.cosine_similarity(h0[b, t], h1[b, t], dim=0) for b in range(2) for t in range(h0.shape[1])
           if states.mask[b, t]]
    assert torch.isclose(torch.stack(cos).mean(), torch.tensor(curves["adjacent_cosine"][-1]), atol=1e-5)
    # (b) for the embeddings of sample 0: cosine of the mean vision and mean text embeddings
    e = states.hidden_states[0][0]
    v, t = e[states.vision_mask[0]].mean(0), e[states.text_mask[0]].mean(0)
    sample0 = F.cosine_similarity(v, t, dim=0)
    assert -1.0 <= float(sample0) <= 1.0


def test_ends_stand_out_in_both_directions():
    assert ends_stand_out([0.3, 0.9, 0.8, 0.4], change_is_low=True) == {"first": True, "last": True}
    assert ends_stand_out([0.85, 0.9, 0.8, 0.4], change_is_low=True) == {"first": False, "last": True}
    assert ends_stand_out([1.5, 0.2, 0.3, 1.2], change_is_low=False) == {"first": True, "last": True}
    assert ends_stand_out([0.1, 0.2, 0.3, 1.2], change_is_low=False) == {"first": False, "last": True}
    assert ends_stand_out([0.3, 0.4], change_is_low=True) is None


def test_profile_frame_and_verdicts():
    profiles = {"deep": {"adjacent_cosine": [0.3, 0.9, 0.9, 0.4]}, "shallow": {"adjacent_cosine": [0.5, 0.6]}}
    frame = profile_frame(profiles)
    assert len(frame) == 6
    assert frame.groupby("model")["depth"].max().tolist() == [1.0, 1.0]
    verdicts = ends_verdicts(profiles)
    assert bool(verdicts.loc[("deep", "adjacent_cosine"), "first"]) is True
    assert verdicts.loc[("shallow", "adjacent_cosine")].isna().all()


def test_mixed_records_take_tasks_in_turn(records):
    from dataclasses import replace

    vqa = [replace(r, id=f"v{i}", task="vqa") for i, r in enumerate(records)]
    pool = list(records) + vqa  # every scene record first, then every vqa record
    chosen = mixed_records(pool, 5)
    assert [r.task for r in chosen] == ["scene", "vqa", "scene", "vqa", "scene"]
    assert [r.id for r in mixed_records(pool, 100)] == [x.id for pair in zip(records, vqa) for x in pair]


def test_sentences_and_paper_table():
    deep = {"adjacent_cosine": [0.3, 0.9, 0.9, 0.95], "vision_text_cosine": [0.1, 0.8, 0.9, 0.95, 0.97],
            "vision_text_distance": [0.7, 0.2, 0.1, 0.1, 0.05]}
    text = describe_ends(deep)
    assert text.startswith("(a) the first layer stands out, the last layer does not; (b) the first point")
    assert claim_verdict(deep) == "shows the pattern at the first layer only"
    both = {"adjacent_cosine": [0.3, 0.9, 0.9, 0.4]}
    assert claim_verdict(both) == "shows the pattern at both ends"
    assert claim_verdict({"adjacent_cosine": [0.3, 0.9]}).startswith("cannot be judged")
    shallow = {k: v[:2] if k == "adjacent_cosine" else v[:3] for k, v in deep.items()}
    table = compare_with_paper({"deep": deep, "shallow": shallow})
    assert table.loc["(a) first", "deep"] == "0.30" and table.loc["(a) last", "deep"] == "0.95"
    assert table.loc["(a) middle", "deep"] == "0.90-0.90" and table.loc["(a) middle", "shallow"] == "-"
    assert table.loc["(c) first", "Align-KD Fig. 2 (paper)"] == "{:.2f}-{:.2f}".format(
        *ALIGN_KD_FIG2["vision_text_distance"]["ends"])


def test_shift_towards():
    profiles = {"teacher": {"m": [0.25]}, "student_sft": {"m": [0.75]}, "student_kd": {"m": [0.5]}}
    assert shift_towards(profiles, "m") == "closer to"
    profiles["student_kd"]["m"] = [1.0]
    assert shift_towards(profiles, "m") == "further from"
    profiles["student_kd"]["m"] = [-0.25]
    assert shift_towards(profiles, "m") == "as far from"


def test_batched_profile_equals_one_batch(student, records):
    """Each record on its own batch, averaged with the documented weights, equals the whole batch.

    Left padding shifts a sample's positions, hence its hidden states, so the records first get
    one common prompt (no padding).
    """
    from dataclasses import replace

    same = [replace(r, question=records[0].question) for r in records]
    collate = generation_collator(student)
    specials = special_token_ids(student.tokenizer)
    whole = layer_profile(collect_layer_states(student.model, collate(same), specials))
    split = batched_profile(student.model, (collate([r]) for r in same), specials)
    for measure in whole:
        assert torch.allclose(torch.tensor(split[measure]), torch.tensor(whole[measure]), atol=1e-5)
    with pytest.raises(ValueError, match="at least one batch"):
        batched_profile(student.model, [], specials)
