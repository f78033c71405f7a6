"""TrainConfig: numbers from the profile, terms from method and ablations, clear errors."""

from __future__ import annotations

import json

import pytest
from accelerate import Accelerator

from kdlib.profiles import get_profile
from kdlib.train.config import ABLATIONS, METHODS, TrainConfig, changed_fields, run_record
from kdlib.train.harness import run_task

TINY = get_profile("tiny")


def test_sft_and_distillation_read_their_own_steps_and_rates():
    sft = TrainConfig.from_profile(TINY, "sft", role="teacher")
    kd = TrainConfig.from_profile(TINY, "paper")
    assert (sft.steps, sft.lr) == (TINY.train.sft_steps, TINY.train.lr)
    assert (kd.steps, kd.lr) == (TINY.train.kd_steps, TINY.train.kd_lr)
    assert kd.minillm.mix_alpha == TINY.train.mix_alpha and kd.max_new_tokens == TINY.train.max_new_tokens
    assert (sft.run_name, kd.run_name) == ("teacher", "student_kd")


@pytest.mark.parametrize("method", METHODS)
def test_every_method_has_terms_and_a_name(method):
    cfg = TrainConfig.from_profile(TINY, method)
    assert cfg.terms and cfg.run_name.startswith("student")


def test_ablations_remove_terms_and_switch_the_sampler():
    cfg = TrainConfig.from_profile(TINY, "paper", ["align", "lm", "teacher_mix", "length_norm"])
    assert cfg.terms == ("single", "long")
    assert cfg.minillm.mix_alpha == 0.0 and not cfg.minillm.length_norm
    assert cfg.run_name == "student_kd-no_align-no_length_norm-no_lm-no_teacher_mix"
    assert TrainConfig.from_profile(TINY, "paper", ["single", "long", "lm"]).terms == ("align",)


@pytest.mark.parametrize("method,ablate,role,match", [
    ("bogus", (), "student", "method 'bogus'"),
    ("paper", ("warp",), "student", "unknown ablation"),
    ("reverse_kl", ("lm",), "student", "paper method only"),
    ("paper", ("align", "single", "long", "lm"), "student", "nothing to optimise"),
    ("paper", (), "teacher", "only projector and sft train the teacher"),
])
def test_bad_configurations_are_refused(method, ablate, role, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_profile(TINY, method, ablate, role=role)


@pytest.mark.parametrize("micro", [0, TINY.train.batch_size])
def test_length_grouping_needs_micro_batches(micro):
    with pytest.raises(ValueError, match="group_by_length groups rows into micro-batches"):
        TrainConfig.from_profile(TINY, "sft", group_by_length=True, micro_batch_size=micro)
    assert TrainConfig.from_profile(TINY, "sft", group_by_length=True, micro_batch_size=2).group_by_length


def test_overrides_and_serialisation():
    cfg = TrainConfig.from_profile(TINY, "paper", ["lm"], micro_batch_size=2)
    d = cfg.to_dict()
    assert cfg.micro_batch_size == 2 and d["ablate"] == ["lm"] and d["minillm"]["mix_alpha"] == cfg.minillm.mix_alpha
    assert set(ABLATIONS) >= set(d["ablate"])


def test_changed_fields_name_what_changes_the_model_only():
    cfg = TrainConfig.from_profile(TINY, "paper")
    saved = run_record(cfg, TINY)
    assert changed_fields(saved, cfg, TINY) == []
    bookkeeping = TINY.override({"train.checkpoint_every": 5, "seeds": 7, "budget": "other"})
    quiet = TrainConfig.from_profile(bookkeeping, "paper", progress=False, keep_checkpoints=4)
    assert changed_fields(saved, quiet, bookkeeping) == []
    faster = TINY.override({"train.kd_lr": 1e-2})
    assert changed_fields(saved, TrainConfig.from_profile(faster, "paper"), faster) == \
        ["profile.train.kd_lr", "train.lr"]
    assert changed_fields({}, cfg, TINY)  # a config.json without the run's fields


def test_a_run_saved_before_a_field_was_added_is_unchanged_at_its_default():
    at_default = TINY.override({"train.grad_norm_every": 0})  # every field popped below at its default
    cfg = TrainConfig.from_profile(at_default, "paper")
    saved = run_record(cfg, at_default)
    for key in ("val_every", "grad_norm_every", "kd_init", "lm_coef"):
        saved["profile"]["train"].pop(key)
        saved["train"].pop(key, None)
    assert changed_fields(saved, cfg, at_default) == []
    guided = at_default.override({"train.kd_init": "guided"})
    assert changed_fields(saved, TrainConfig.from_profile(guided, "paper"), guided) == ["profile.train.kd_init"]
    assert changed_fields(saved, TrainConfig.from_profile(TINY, "paper"), TINY) == \
        ["profile.train.grad_norm_every", "train.grad_norm_every"]  # tiny's 5 is not the old runs' 0


def test_resume_refuses_checkpoints_of_another_configuration(tmp_path):
    cfg = TrainConfig.from_profile(TINY, "paper")
    (tmp_path / "config.json").write_text(json.dumps(run_record(cfg, TINY)))
    (tmp_path / "checkpoints" / "step-00000002").mkdir(parents=True)
    other = TrainConfig.from_profile(TINY, "paper", ["lm"])
    with pytest.raises(ValueError, match=r"config\.json.*train\.ablate.*without --resume"):
        run_task(None, other, TINY, tmp_path, Accelerator(cpu=True), resume=True)


def test_a_field_added_after_a_run_was_saved_reads_as_its_default():
    cfg = TrainConfig.from_profile(TINY, "paper")
    saved = run_record(cfg, TINY)
    del saved["train"]["divergence"]
    assert changed_fields(saved, cfg, TINY) == []
    assert changed_fields(saved, TrainConfig.from_profile(TINY, "paper", divergence="jsd"), TINY) == ["train.divergence"]


def test_minillm_form_and_ppo_epochs_name_the_run():
    profile = get_profile("tiny")
    cfg = TrainConfig.from_profile(profile, "paper", form="unbiased", ppo_epochs=4)
    assert cfg.minillm.importance == "sequence" and not cfg.minillm.length_norm
    assert cfg.run_name == "student_kd_unbiased_ppo4"
    assert TrainConfig.from_profile(profile, "paper").run_name == "student_kd"
    assert not TrainConfig.from_profile(profile, "paper", ablate=["length_norm"]).minillm.length_norm
    with pytest.raises(ValueError, match="ppo_epochs"):
        TrainConfig.from_profile(profile, "forward_kl", ppo_epochs=2)


def test_teacher_steps_set_the_teacher_sft_alone(overrides):
    profile = get_profile("tiny", {**overrides, "train.teacher_steps": 7, "train.sft_steps": 2})
    assert TrainConfig.from_profile(profile, "sft", role="teacher").steps == 7
    assert TrainConfig.from_profile(profile, "sft").steps == 2
    assert TrainConfig.from_profile(profile, "guided_sft").steps == 2
    assert TrainConfig.from_profile(get_profile("tiny", overrides), "sft", role="teacher").steps == 3


def test_switch_kd_readings_are_validated_and_name_the_run():
    cfg = TrainConfig.from_profile(TINY, "switch_kd")
    assert (cfg.kneedle_reading, cfg.switch_direction) == ("knee", "switched_to_teacher")
    assert cfg.run_name == "student_switch_kd"
    code = TrainConfig.from_profile(TINY, "switch_kd", kneedle_reading="dbild_code",
                                    switch_direction="student_to_switched")
    assert code.run_name == "student_switch_kd_dbild_code_student_to_switched"
    assert TrainConfig.from_profile(TINY, "switch_kd", switch_direction="student_to_switched").run_name == \
        "student_switch_kd_student_to_switched"
    assert changed_fields(run_record(cfg, TINY), code, TINY) == ["train.kneedle_reading", "train.switch_direction"]
    with pytest.raises(ValueError, match="kneedle_reading must be one of knee, dbild_code"):
        TrainConfig.from_profile(TINY, "switch_kd", kneedle_reading="kneedle")
    with pytest.raises(ValueError, match="switch_direction one of"):
        TrainConfig.from_profile(TINY, "switch_kd", switch_direction="teacher_to_student")
    with pytest.raises(ValueError, match="switch_kd only"):
        TrainConfig.from_profile(TINY, "align_kd", kneedle_reading="dbild_code")


def test_a_switch_kd_run_saved_before_its_readings_were_fields_is_unchanged():
    cfg = TrainConfig.from_profile(TINY, "switch_kd")
    saved = run_record(cfg, TINY)
    del saved["train"]["kneedle_reading"], saved["train"]["switch_direction"]
    assert changed_fields(saved, cfg, TINY) == []


def test_micro_batching_comes_from_the_profile_and_keeps_saved_runs_valid(overrides):
    profile = get_profile("tiny", {**overrides, "train.micro_batch_size": 2, "train.group_by_length": True})
    cfg = TrainConfig.from_profile(profile, "sft")
    assert (cfg.micro_batch_size, cfg.group_by_length) == (2, True)
    plain = get_profile("tiny", overrides)
    assert changed_fields(run_record(TrainConfig.from_profile(plain, "sft"), plain), cfg, profile) == []
    with pytest.raises(ValueError, match="micro_batch_size"):
        get_profile("tiny", {**overrides, "train.micro_batch_size": 5})


@pytest.mark.parametrize("term", ["align", "single", "long", "lm"])
def test_a_term_weight_changes_the_paper_runs_only(term):
    """Reweighting the paper objective leaves the configuration (and so the reuse) of every other run alone."""
    weighted = get_profile("tiny", {f"train.{term}_coef": 0.25})
    assert getattr(TrainConfig.from_profile(weighted, "paper"), f"{term}_coef") == 0.25
    assert getattr(TrainConfig.from_profile(weighted, "paper", ("lm",) if term != "lm" else ()), f"{term}_coef") == 0.25
    for method in METHODS:
        if method != "paper":
            for role in ("teacher", "student") if method in ("sft", "projector") else ("student",):
                assert TrainConfig.from_profile(weighted, method, role=role) == TrainConfig.from_profile(TINY, method, role=role)
