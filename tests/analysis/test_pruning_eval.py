"""The pruned-model wrapper: k visual tokens reach the LLM, prompts shrink to match, the runner still works."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, Dinov2Config, Dinov2Model, ViTConfig, ViTModel

from kdlib.analysis.pruning_eval import (PrunedMLLM, answer_nll, drop_image_tokens, encoder_layers, keep_counts,
                                         pruned_answers, pruned_name, pruning_verdict, query_value_maps,
                                         select_visual_tokens)
from kdlib.evaluate.generate import generation_collator, greedy_config
from kdlib.evaluate.runner import evaluate_model
from kdlib.models import build_pair, num_image_tokens
from kdlib.models.features import output_projector
from kdlib.models.io import LoadedMLLM
from kdlib.profiles import get_profile
from kdlib.pruning import anchored_select, background_prune
from kdlib.run import RunContext


def test_drop_image_tokens_keeps_the_first_k_and_everything_else():
    img = 9
    ids = torch.tensor([[0, 0, 1, img, img, img, 5, 6], [1, img, img, img, 7, 8, 3, 3]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0, 0]])
    new_ids, new_mask = drop_image_tokens(ids, img, 1, mask)
    assert new_ids.tolist() == [[0, 0, 1, img, 5, 6], [1, img, 7, 8, 3, 3]]
    assert new_mask.tolist() == [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]
    # the same positions, found by hand: every image position after the first k of its row
    for row in range(2):
        image_positions = [i for i, t in enumerate(ids[row].tolist()) if t == img]
        kept = [t for i, t in enumerate(ids[row].tolist()) if i not in image_positions[1:]]
        assert new_ids[row].tolist() == kept
    with pytest.raises(ValueError, match="same number"):
        drop_image_tokens(ids[:, :5], img, 1, mask[:, :5])


def test_select_visual_tokens_is_prune_then_anchored_select():
    torch.manual_seed(0)
    layer = torch.randn(2, 1 + 16, 8)
    layer[0, 1:9] = layer[0, 1]  # the top half of image 0 is one homogeneous region
    q, k = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)
    reduced, clusters = select_visual_tokens(layer, (4, 4), 5, q, k)
    manual = background_prune(layer[:, 1:], (4, 4))
    picked, _ = anchored_select(manual.centers, layer[:, 0], 5, manual.counts, query=q, key=k)
    assert torch.equal(reduced[:, 0], layer[:, 0])
    assert torch.allclose(reduced[:, 1:], picked)
    assert clusters.tolist() == manual.num_clusters.tolist() and clusters[0] < clusters[1]


def test_pruned_model_feeds_k_tokens_and_keep_all_is_the_model(student, records):
    batch = generation_collator(student)(records[:2])
    n = num_image_tokens(student.model)
    full = PrunedMLLM(student.model, n)
    with torch.no_grad():
        plain = student.model(**batch)
        same = full(**batch)
        pruned = PrunedMLLM(student.model, 4)
        out = pruned(**batch)
    assert torch.equal(plain.logits, same.logits)
    assert out.logits.shape[1] == batch["input_ids"].shape[1] - (n - 4)
    assert output_projector(out, 2).shape[:2] == (2, 4)
    assert len(pruned.clusters) == 2 and all(1 <= c <= n for c in pruned.clusters)


def test_pruning_works_on_a_pooled_tower(pair, profile, records):
    """``small`` pools the ViT grid (4 x 4 -> 2 x 2 here); pruning then picks among the pooled tokens."""
    pooled = build_pair(profile.override({"vision.pool_grid": 2}), pair.tokenizer, seed=1)
    mllm = LoadedMLLM(pooled.student.eval(), pooled.tokenizer, pooled.image_processor)
    batch = generation_collator(mllm)(records[:2])
    pruned = PrunedMLLM(mllm.model, 2)
    with torch.no_grad():
        out = pruned(**batch)
    assert output_projector(out, 2).shape[:2] == (2, 2)
    assert len(pruned.clusters) == 2 and all(1 <= c <= 4 for c in pruned.clusters)


def test_pruned_generate_returns_the_original_prompt_then_new_tokens(student, records):
    batch = generation_collator(student)(records[:2])
    pruned = PrunedMLLM(student.model, 8)
    out = pruned.generate(**batch, generation_config=greedy_config(student.tokenizer, 3))
    prompt = batch["input_ids"].shape[1]
    assert torch.equal(out[:, :prompt], batch["input_ids"])
    assert 1 <= out.shape[1] - prompt <= 3


def test_the_runner_evaluates_a_pruned_model(student, records, tmp_path):
    wrapped = LoadedMLLM(PrunedMLLM(student.model, 2), student.tokenizer, student.image_processor)
    run = evaluate_model(wrapped, records, "scene_ucmerced", tmp_path / "answers.jsonl", max_new_tokens=3,
                         batch_size=3, progress=False)
    lines = [json.loads(line) for line in run.path.read_text().splitlines()]
    assert run.n == len(records) == len(lines)
    assert [line["ground_truth"] for line in lines] == [r.answer for r in records]


def test_keep_counts_and_bad_keep(student):
    assert keep_counts(64, (1.0, 0.5, 0.25, 0.125)) == [64, 32, 16, 8]
    assert keep_counts(16, (0.01,)) == [1]
    with pytest.raises(ValueError):
        keep_counts(16, (0.0,))
    with pytest.raises(ValueError, match="keep"):
        PrunedMLLM(student.model, 0)


def test_answer_nll_matches_a_direct_log_softmax(student, records):
    from kdlib.data.collate import Collator

    collate = Collator(student.tokenizer, student.image_processor, num_image_tokens(student.model), 256)
    batches = [collate(records[:3]), collate(records[3:])]
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            logp = torch.log_softmax(student.model(**{k: v for k, v in batch.items() if k != "labels"}).logits, -1)
            labels = batch["labels"][:, 1:]
            scored = labels != -100
            total -= float(logp[:, :-1][scored].gather(-1, labels[scored][:, None]).sum())
            count += int(scored.sum())
    assert answer_nll(student.model, batches) == pytest.approx(total / count, rel=1e-5)
    n = num_image_tokens(student.model)
    assert answer_nll(PrunedMLLM(student.model, n), batches) == pytest.approx(total / count, rel=1e-5)
    assert answer_nll(PrunedMLLM(student.model, 2), batches) > 0


def test_pruning_verdict():
    rows = [{"task": t, "keep": k, "OA": oa} for t, k, oa in
            (("a", 64, 50.0), ("a", 8, 45.5), ("b", 64, 10.0), ("b", 8, 10.0))]
    assert pruning_verdict(rows) == "Keeping 8 of the 64 tokens changes OA by -4.50 points on a and +0.00 on b."


@pytest.mark.parametrize("kind", ["clip", "dinov2", "vit"])
def test_query_value_maps_finds_the_attention_maps_of_each_tower(kind):
    """CLIP keeps its blocks in vision_model.encoder.layers, DINOv2 in encoder.layer, ViT (transformers 5)
    in layers; the maps are named q_proj/v_proj or query/value."""
    sizes = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32}
    config, model = {"clip": (CLIPVisionConfig, CLIPVisionModel), "dinov2": (Dinov2Config, Dinov2Model),
                     "vit": (ViTConfig, ViTModel)}[kind]
    tower = model(config(**sizes))
    q, v = query_value_maps(tower, -2)
    layers = encoder_layers(tower)
    assert len(layers) == 2
    names = {id(m): n for n, m in layers[-2].named_modules()}
    assert names[id(q)].rsplit(".", 1)[-1] in ("q_proj", "query")
    assert names[id(v)].rsplit(".", 1)[-1] in ("v_proj", "value")
    no_maps = torch.nn.Module()
    no_maps.layer = torch.nn.ModuleList([torch.nn.Linear(4, 4)])
    with pytest.raises(ValueError, match="no q_proj/v_proj"):
        query_value_maps(no_maps, 0)
    with pytest.raises(ValueError, match="no list of encoder layers"):
        encoder_layers(torch.nn.Linear(4, 4))


def test_pruned_answers_are_read_back_per_tokens_kept(tmp_path):
    ctx = RunContext(get_profile("tiny"), tmp_path, tmp_path / "run", 0, torch.device("cpu"), False)
    for keep, answer in ((8, "port"), (64, "pond")):
        path = ctx.answers_file(pruned_name("student_kd", keep), "scene_aid")
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"question_id": "a/1.jpg", "answer": answer, "ground_truth": "Port"}) + "\n")
    assert pruned_name("student_kd", 8) == "student_kd_keep8"
    assert pruned_answers(ctx, "student_kd", "scene_aid", [64, 8]) == {64: ["pond"], 8: ["port"]}
    with pytest.raises(FileNotFoundError, match="related_methods"):
        pruned_answers(ctx, "student_kd", "scene_aid", [16])
