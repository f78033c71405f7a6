"""Supervised fine-tuning of the teacher and of the baseline student, and the teacher-guided SFT.

SFT minimises the token cross-entropy of the ground-truth answers (Collator ``mode="train"``:
labels -100 on system, prompt, image tokens and padding); ``guided_sft`` adds the forward KL to a
frozen teacher on the same tokens (:class:`~kdlib.train.methods.GuidedSFTObjective`). What trains follows the profile:
LoRA on the LLM's linear layers (``lora.r > 0``, GeoChat) or the full LLM (``r = 0``), the
projector always, the vision tower never (:func:`kdlib.models.apply_lora`); ``projector`` (LLaVA's
stage 1) trains the projector alone (:func:`kdlib.models.projector_only`) on the records it is given
(:func:`kdlib.data.alignment.alignment_records` in the study).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from torch import nn

from kdlib.data.study import Study
from kdlib.models import apply_lora, check_same_vocab, freeze, projector_only
from kdlib.profiles import Profile
from kdlib.train.config import SFT_METHODS, TrainConfig
from kdlib.train.harness import GroundTruthTask, TrainResult, make_accelerator, run_task, train_collator
from kdlib.train.methods import build_objective


def train_sft(model: nn.Module, tokenizer: Any, image_processor: Any, study: Study, cfg: TrainConfig,
              profile: Profile, run_dir: Path, resume: bool = False,
              device: str | torch.device | None = None, teacher: nn.Module | None = None) -> TrainResult:
    """Fine-tune ``model`` (teacher or baseline student) on ``study.train`` for ``cfg.steps`` steps
    (``cfg`` from :meth:`TrainConfig.from_profile` with method ``sft``); with ``cfg.val_every`` the
    returned model has the weights of the step with the lowest loss on ``study.val``. ``guided_sft``
    needs the frozen ``teacher``."""
    if cfg.method not in SFT_METHODS:
        raise ValueError(f"train_sft trains {' or '.join(SFT_METHODS)}, not {cfg.method!r}; use distill")
    if (teacher is None) != (cfg.method != "guided_sft"):
        raise ValueError(f"{cfg.run_name}: guided_sft needs a teacher and {cfg.method} takes none")
    accelerator = make_accelerator(cfg, device)
    set_seed(cfg.seed)
    if teacher is not None:
        check_same_vocab(teacher, model)
        freeze(teacher).to(accelerator.device)
    model = projector_only(model) if cfg.method == "projector" else apply_lora(model, profile.lora)
    objective = build_objective(model, teacher, cfg)
    task = GroundTruthTask(objective, study.train, train_collator(model, tokenizer, image_processor, cfg),
                           cfg, accelerator, val_records=study.val if cfg.val_every else ())
    metrics = run_task(task, cfg, profile, run_dir, accelerator, resume)
    return TrainResult(model.eval(), metrics, cfg)
