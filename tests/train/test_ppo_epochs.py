"""PPO epochs and the unbiased MiniLLM form in a real (tiny) distillation run."""

from __future__ import annotations

import torch

from kdlib.models import load_mllm
from kdlib.train.config import TrainConfig
from kdlib.train.distill import distill
from kdlib.train.metrics_log import read_metrics

PT_TEXTS = ["Is there a road next to the river? yes.", "Many buildings stand along a wide street."]


def run(start_models, study, profile, tmp_path, **changes):
    teacher = load_mllm(start_models / "models" / "teacher")
    start = load_mllm(start_models / "models" / "student_sft")
    cfg = TrainConfig.from_profile(profile, "paper", progress=False, **changes)
    result = distill(start.model, teacher.model, start.tokenizer, start.image_processor, study, cfg, profile,
                     tmp_path, pt_texts=PT_TEXTS)
    return result, read_metrics(result.metrics)


def test_ppo_epochs_reuse_rollouts_and_the_clip_acts(profile, study, start_models, tmp_path):
    result, records = run(start_models, study, profile, tmp_path, steps=3, ppo_epochs=3, lr=3e-2,
                          form="unbiased", ablate=("align", "lm"))
    assert result.config.run_name == "student_kd_unbiased_ppo3-no_align-no_lm"
    clip = [r["clip_frac"] for r in records]
    assert clip[0] == 0.0  # unbiased form at the rollout's parameters: the clip never acts
    assert clip[2] > 0.0  # later epochs: q_theta / q_old has left [0.8, 1.2] on some tokens
    assert all(r["grad_norm"] > 0 for r in records)
    assert len({round(r["long"], 8) for r in records}) == 3  # the same rollouts, a moving policy


def test_rollouts_are_sampled_once_per_group(profile, study, start_models, tmp_path):
    from kdlib.train.distill import RolloutTask
    seen = []
    original = RolloutTask._rollouts

    def spy(self, step, prompts):
        seen.append(step)
        return original(self, step, prompts)

    RolloutTask._rollouts = spy
    try:
        run(start_models, study, profile, tmp_path / "a", steps=4, ppo_epochs=2, ablate=("align", "lm"))
        assert seen == [0, 1]
        seen.clear()
        run(start_models, study, profile, tmp_path / "b", steps=2, ablate=("align", "lm"))
        assert seen == [0, 1]
    finally:
        RolloutTask._rollouts = original
