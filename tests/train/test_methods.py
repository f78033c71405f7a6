"""One tiny step of every method trains the student's trainable parameters and leaves the teacher alone."""

from __future__ import annotations

import math

import pytest
import torch

from kdlib.models import load_mllm, trainable_parameters
from kdlib.train.config import METHODS
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
    common = dict(run_dir=tmp_path, progress=False, steps=1)
    if method == "sft":
        result = train_sft(start.model, start.tokenizer, start.image_processor, study, profile, **common)
    else:
        result = distill(start.model, teacher.model, start.tokenizer, start.image_processor, study, profile, method,
                         pt_texts=PT_TEXTS, **common)
    [record] = read_metrics(result.metrics)
    assert set(result.config.terms) <= set(record) and math.isfinite(record["loss"])
    trained = trainable_parameters(result.model)
    unchanged = [n for n, p in trained.items() if torch.equal(p.detach(), before_student[n])]
    assert trained and not unchanged, f"{method}: parameters without update: {unchanged[:5]}"
    after = result.model.state_dict()
    frozen = [n for n in after if "vision_tower" in n]
    assert frozen and all(torch.equal(after[n], before_student[n]) for n in frozen)
    assert all(torch.equal(v, before_teacher[k]) for k, v in teacher.model.state_dict().items())
    if method != "sft":
        assert not any(p.requires_grad for p in teacher.model.parameters()) and not teacher.model.training
