"""One tiny step of every method trains the student's trainable parameters and leaves the teacher alone."""

from __future__ import annotations

import math

import pytest
import torch

from kdlib.models import load_mllm, trainable_parameters
from kdlib.train.config import METHODS, SFT_METHODS, TrainConfig
from kdlib.train.distill import distill
from kdlib.train.metrics_log import read_metrics
from kdlib.train.sft import train_sft

PT_TEXTS = ["Is there a road next to the river? yes.", "Many buildings stand along a wide street.",
            "How many tennis courts are there? 2.", "A green field lies beside a small lake."]


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("method", METHODS)
def test_one_step_updates_the_student_only(method, profile, study, start_models, tmp_path):
    teacher = load_mllm(start_models / "models" / "teacher")
    start = load_mllm(start_models / "models" / "student_sft")
    before_student, before_teacher = snapshot(start.model), snapshot(teacher.model)
    cfg = TrainConfig.from_profile(profile, method, progress=False, steps=1)
    if method in SFT_METHODS:
        result = train_sft(start.model, start.tokenizer, start.image_processor, study, cfg, profile, tmp_path,
                           teacher=teacher.model if method == "guided_sft" else None)
    else:
        result = distill(start.model, teacher.model, start.tokenizer, start.image_processor, study, cfg, profile,
                         tmp_path, pt_texts=PT_TEXTS)
    [record] = read_metrics(result.metrics)
    assert set(result.config.terms) <= set(record) and math.isfinite(record["loss"])
    trained = trainable_parameters(result.model)
    unchanged = [n for n, p in trained.items() if torch.equal(p.detach(), before_student[n])]
    assert trained and not unchanged, f"{method}: parameters without update: {unchanged[:5]}"
    after = result.model.state_dict()
    frozen = [n for n in after if "vision_tower" in n]
    assert frozen and all(torch.equal(after[n], before_student[n]) for n in frozen)
    assert all(torch.equal(v, before_teacher[k]) for k, v in teacher.model.state_dict().items())
    if method not in ("sft", "projector"):
        assert not any(p.requires_grad for p in teacher.model.parameters()) and not teacher.model.training


@pytest.mark.parametrize("kd_ratio", [0.0, 0.5])
def test_paper_lm_term_is_eq7_of_the_losses_module(kd_ratio, profile, start_models):
    """Eq. 7 is written twice: chunked over hidden states in the paper objective, on full logits in
    :func:`kdlib.losses.lm_loss`. Same value without the forward-KD mix; with it the objective uses
    ``KL(p || q)`` where ``lm_loss`` uses the soft cross-entropy, which differ by the teacher entropy
    (no gradient), so the gradients must agree."""
    import dataclasses

    from kdlib.data.collate import text_batch
    from kdlib.losses import lm_loss
    from kdlib.train.methods import PaperObjective

    teacher = load_mllm(start_models / "models" / "teacher").model
    student = load_mllm(start_models / "models" / "student_sft")
    cfg = TrainConfig.from_profile(profile, "paper", ("align", "single", "long"), progress=False)
    cfg = dataclasses.replace(cfg, minillm=dataclasses.replace(cfg.minillm, pt_kd_ratio=kd_ratio))
    batch = text_batch(student.tokenizer, PT_TEXTS, profile.data.max_length)
    denom = (batch["labels"][:, 1:] != -100).sum()
    micro = {"pt_input_ids": batch["input_ids"], "pt_attention_mask": batch["attention_mask"],
             "pt_labels": batch["labels"], "pt_denom": denom, "tokens": batch["input_ids"]}
    objective = PaperObjective(student.model, teacher, cfg)
    head = student.model.get_output_embeddings().weight

    chunked = objective.terms(micro)["lm"]
    (g_chunked,) = torch.autograd.grad(chunked, head)
    logits = student.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    with torch.no_grad():
        t_logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    full = lm_loss(logits[:, :-1], batch["labels"][:, 1:], t_logits[:, :-1], kd_ratio=kd_ratio, denom=denom)
    (g_full,) = torch.autograd.grad(full, head)
    assert g_full.abs().sum() > 0 and torch.allclose(g_chunked, g_full, atol=1e-6), (g_chunked - g_full).abs().max()
    if kd_ratio == 0.0:
        assert torch.allclose(chunked, full, atol=1e-5)


def test_switch_kd_readings_reach_the_objective_and_change_its_terms(profile, study, start_models):
    """``kneedle_reading`` changes both DBiLD terms; ``switch_direction`` changes the switch term and what
    it trains: the switched teacher (the student's head gets no gradient from it) or the student itself."""
    from kdlib.train.batches import scored_tokens
    from kdlib.train.harness import train_collator
    from kdlib.train.methods import SwitchKDObjective

    teacher = load_mllm(start_models / "models" / "teacher").model
    start = load_mllm(start_models / "models" / "student_sft")
    base = TrainConfig.from_profile(profile, "switch_kd", progress=False)
    batch = train_collator(start.model, start.tokenizer, start.image_processor, base, "train")(list(study.train[:4]))
    micro = {**batch, "denom": scored_tokens(batch["labels"]), "share": 1.0}
    head = start.model.get_output_embeddings().weight

    def terms(**readings):
        cfg = TrainConfig.from_profile(profile, "switch_kd", progress=False, **readings)
        out = SwitchKDObjective(start.model, teacher, cfg).terms(micro)
        (g_head,) = torch.autograd.grad(out["switch"], head, allow_unused=True)
        return out, 0.0 if g_head is None else float(g_head.abs().sum())

    (knee, knee_head), (code, _) = terms(), terms(kneedle_reading="dbild_code")
    assert not torch.isclose(knee["dbild"], code["dbild"]) and not torch.isclose(knee["switch"], code["switch"])
    assert torch.equal(knee["ce"], code["ce"])
    reference, reference_head = terms(switch_direction="student_to_switched")
    assert torch.equal(knee["dbild"], reference["dbild"]) and not torch.isclose(knee["switch"], reference["switch"])
    assert knee_head == 0.0 and reference_head > 0.0
