"""LLaVA's stage 1 (``projector``): the projector alone learns, and every SFT of that role starts from it."""

from __future__ import annotations

import pytest
import torch

from kdlib.data.alignment import alignment_records
from kdlib.data.prompts import CAPTION_QUERY
from kdlib.models import load_mllm
from kdlib.profiles import get_profile
from kdlib.run import RunContext
from kdlib.train.config import TrainConfig, run_name, sft_start
from kdlib.train.metrics_log import read_metrics
from kdlib.train.study import build_models, run_study_training, train_run

PROJECTOR = "multi_modal_projector."


def test_alignment_records_describe_whole_pictures_of_the_given_split(study):
    records = alignment_records(study.train)
    kept = [r for r in study.train if r.task in ("scene", "caption")]
    assert len(records) == len(kept) > 0
    assert all(r.question == CAPTION_QUERY and r.task == "caption" for r in records)
    assert [(r.image, r.answer) for r in records] == [(r.image, r.answer) for r in kept]
    test_images = {r.image_key for r in study.test}
    assert not test_images & {r.image_key for r in records}


def test_projector_run_names_and_where_sft_starts(overrides):
    on = get_profile("tiny", {**overrides, "train.projector_steps": 2, "train.projector_lr": 3e-3})
    cfg = TrainConfig.from_profile(on, "projector", role="teacher")
    assert (cfg.run_name, cfg.steps, cfg.lr, cfg.val_every) == ("teacher_projector", 2, 3e-3, 0)
    assert run_name("projector") == "student_projector"
    assert sft_start(on, "sft", "teacher") == "teacher_projector"
    assert sft_start(on, "guided_sft") == "student_projector"
    assert sft_start(on, "paper") is None and sft_start(get_profile("tiny", overrides), "sft") is None
    with pytest.raises(ValueError, match="projector_steps"):
        get_profile("tiny", {"train.projector_steps": -1})
    with pytest.raises(ValueError, match="train the teacher"):
        TrainConfig.from_profile(on, "guided_sft", role="teacher")


def test_stage_one_moves_only_the_projector_and_sft_starts_from_it(overrides, data_root, study, tmp_path):
    profile = get_profile("tiny", {**overrides, "train.projector_steps": 3, "train.sft_steps": 1,
                                   "train.kd_steps": 1})
    ctx = RunContext(profile, data_root, tmp_path, 0, torch.device("cpu"), False)
    with pytest.raises(FileNotFoundError, match="teacher_projector.*--method projector --role teacher"):
        train_run(ctx, "sft", role="teacher", study=study)
    runs = run_study_training(ctx, study=study)
    assert list(runs.runs)[:4] == ["teacher_projector", "student_projector", "teacher", "student_sft"]
    stage1 = runs.runs["teacher_projector"]
    assert len(read_metrics(stage1.metrics)) == 3
    built = build_models(profile, study, 0).teacher.state_dict()  # the seeded build the stage started from
    aligned = load_mllm(stage1.model).model.state_dict()
    moved = {k for k in aligned if not torch.equal(aligned[k], built[k])}
    assert moved and all(k.startswith(f"model.{PROJECTOR}") for k in moved)
    teacher = load_mllm(runs.runs["teacher"].model).model.state_dict()
    llm = [k for k in teacher if "language_model" in k]
    assert any(not torch.equal(teacher[k], aligned[k]) for k in llm)  # SFT trains the LLM after stage 1
    assert all(torch.equal(teacher[k], aligned[k]) for k in teacher if "vision_tower" in k)

