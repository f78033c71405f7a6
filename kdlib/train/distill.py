"""Distillation of the student from the frozen teacher (core paper Table 1 and its baselines).

One ``paper`` step, as Table 1 lists it:

1. sample a batch of prompts ``S`` from the instruction data ``D`` (the training split);
2. sample a batch ``D'_PT`` of pre-training text (:func:`kdlib.data.pretrain.pretrain_texts`);
3. roll out responses by teacher-mixed sampling (:func:`kdlib.sampling.mixed_sample`), with the
   rewards ``r_t``, importance weights ``w_t`` and normalised returns of Eq. 8-9 (MiniLLM code
   form, :mod:`kdlib.losses.minillm`; returns are whitened over the *global* batch);
4. compute the projector alignment (Eq. 4-5) and the single-step and long-term terms (Eq. 8)
   on ``S`` and the LM term (Eq. 7) on ``D'_PT``;
5. update the student with their sum (Eq. 10).

The other methods (``forward_kl``, ``reverse_kl``, ``align_kd``, ``switch_kd``) train on the
ground-truth responses, without sampling. The teacher is frozen and in eval mode; the student
starts from its SFT baseline and trains as the profile says (LoRA or full; vision tower frozen).
With ``ppo_epochs = n`` (LMOps: 4) each batch of rollouts serves ``n`` consecutive updates:
steps ``k n .. k n + n - 1`` reuse the rollouts of prompt batch ``k`` with their rollout-time
log-probs, weights and advantages, so from the second update on the PPO ratio
``q_theta / q_old`` moves away from 1 and the clip acts (``clip_frac`` in the metrics); each
update draws a fresh ``D_PT`` batch. ``n = 1`` is Table 1's one update per rollout. A run
resumed in the middle of a group samples that group's rollouts again from the current student.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import Tensor, nn

from kdlib.data.collate import Collator, text_batch
from kdlib.data.study import Study
from kdlib.losses import importance_weights, returns, token_rewards
from kdlib.models import apply_lora, check_same_vocab, freeze
from kdlib.profiles import Profile
from kdlib.sampling import Rollout, mixed_sample
from kdlib.train.batches import (BatchOrder, global_count, local_block, micro_slices, step_generator, to_device)
from kdlib.train.config import SFT_METHODS, TrainConfig
from kdlib.train.methods import Objective, build_objective
from kdlib.train.harness import GroundTruthTask, TrainResult, make_accelerator, run_task, train_collator


def _pad_columns(x: Tensor, width: int) -> Tensor:
    return torch.nn.functional.pad(x, (0, width - x.shape[1]))


class RolloutTask:
    """Batches of the ``paper`` method: teacher-mixed rollouts of training prompts + ``D_PT`` text."""

    def __init__(self, objective: Objective, records: Sequence[Any], prompts: Callable[[list[Any]], dict[str, Tensor]],
                 pt_texts: Sequence[str], tokenizer: Any, cfg: TrainConfig, accelerator: Accelerator) -> None:
        self.module, self.records, self.prompts = objective, list(records), prompts
        self.pt_texts, self.tokenizer = list(pt_texts), tokenizer
        self.cfg, self.accelerator = cfg, accelerator
        self.order = BatchOrder(len(self.records), cfg.batch_size, cfg.seed)
        self.use_pt = "lm" in cfg.terms
        if self.use_pt and not self.pt_texts:
            raise ValueError("the paper method's LM term (Eq. 7) needs D_PT texts; pass pt_texts or --ablate lm")
        # special tokens other than EOS are never sampled (an <image> id would open an image slot)
        self.suppressed = [i for i in tokenizer.all_special_ids if i != tokenizer.eos_token_id]
        self.pt_order = (BatchOrder(len(self.pt_texts), cfg.effective_pt_batch_size, cfg.seed + 1)
                         if self.use_pt else None)
        self._reused: tuple[int, list[dict[str, Any]]] | None = None  # (rollout group, its micro-batches)

    def _rollouts(self, step: int, prompts: dict[str, Tensor]) -> list[tuple[slice, Rollout]]:
        cfg, acc = self.cfg, self.accelerator
        noise = torch.rand(cfg.batch_size, cfg.max_new_tokens, generator=step_generator(cfg.seed, step))
        noise = torch.stack(local_block(list(noise), acc))
        student = self.module.student
        out = []
        for rows in micro_slices(prompts["input_ids"].shape[0], cfg.micro_batch_size):
            with acc.autocast():
                rollout = mixed_sample(student, self.module.teacher, {k: v[rows] for k, v in prompts.items()},
                                       cfg.max_new_tokens, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id,
                                       alpha=cfg.minillm.mix_alpha, do_sample=cfg.do_sample, uniforms=noise[rows],
                                       suppress_token_ids=self.suppressed)
            out.append((rows, rollout))
        return out

    def _advantages(self, rollouts: list[tuple[slice, Rollout]]) -> Tensor:
        """Normalised, whitened returns of the global batch, this process's rows: ``[B_local, T_max]``."""
        width = max(r.tokens.shape[1] for _, r in rollouts)
        rewards = torch.cat([_pad_columns(token_rewards(r.teacher_logprobs, r.old_logprobs, r.mask,
                                                        self.cfg.minillm), width) for _, r in rollouts])
        mask = torch.cat([_pad_columns(r.mask, width) for _, r in rollouts])
        acc = self.accelerator
        all_rewards = acc.gather(acc.pad_across_processes(rewards, dim=1))
        all_mask = acc.gather(acc.pad_across_processes(mask, dim=1))
        adv = returns(all_rewards, all_mask.bool(), self.cfg.minillm)
        local = rewards.shape[0]
        return adv[acc.process_index * local:(acc.process_index + 1) * local]

    def _pt_chunks(self, step: int, parts: int) -> list[dict[str, Tensor]]:
        texts = local_block([self.pt_texts[i] for i in self.pt_order.indices(step)], self.accelerator)
        batch = to_device(text_batch(self.tokenizer, texts, self.cfg.max_length), self.accelerator.device)
        bounds = torch.tensor_split(torch.arange(len(texts)), parts)
        return [{f"pt_{k}": v[idx] for k, v in batch.items()} for idx in bounds]

    def _rollout_micros(self, group: int) -> list[dict[str, Any]]:
        """The rollout part of the micro-batches of rollout group ``group`` (sampled once, then reused)."""
        if self._reused is not None and self._reused[0] == group:
            return [dict(m) for m in self._reused[1]]
        cfg, acc = self.cfg, self.accelerator
        chosen = local_block([self.records[i] for i in self.order.indices(group)], acc)
        prompts = to_device(self.prompts(chosen), acc.device)
        rollouts = self._rollouts(group, prompts)
        adv = self._advantages(rollouts)
        world = acc.num_processes
        resp_denom = global_count(sum(r.mask.sum() for _, r in rollouts), acc) / world
        micros = []
        for rows, r in rollouts:
            weights = importance_weights(r.old_logprobs, r.mix_logprobs, r.mask, cfg.minillm)
            micros.append({"prompt_ids": r.prompt_ids, "prompt_mask": r.prompt_mask, "tokens": r.tokens,
                           "mask": r.mask, "old_logprobs": r.old_logprobs, "weights": weights,
                           "advantages": adv[rows, :r.tokens.shape[1]],
                           "resp_denom": resp_denom, "share": r.tokens.shape[0] * world / cfg.batch_size,
                           "num_tokens": int(r.attention_mask.sum()), "num_generated": int(r.mask.sum())})
            if "pixel_values" in prompts:
                micros[-1]["pixel_values"] = prompts["pixel_values"][rows]
        self._reused = (group, micros)
        return [dict(m) for m in micros]

    def micro_batches(self, step: int) -> list[dict[str, Any]]:
        micros = self._rollout_micros(step // self.cfg.ppo_epochs)
        if self.use_pt:
            acc, world = self.accelerator, self.accelerator.num_processes
            chunks = self._pt_chunks(step, len(micros))
            pt_denom = global_count(sum((c["pt_labels"][:, 1:] != -100).sum() for c in chunks), acc) / world
            for micro, chunk in zip(micros, chunks):
                micro.update(chunk, pt_denom=pt_denom)
                micro["num_tokens"] += int(chunk["pt_attention_mask"].sum())
        return micros


def distill(student: nn.Module, teacher: nn.Module, tokenizer: Any, image_processor: Any, study: Study,
            cfg: TrainConfig, profile: Profile, run_dir: Path, pt_texts: Sequence[str] = (), resume: bool = False,
            device: str | torch.device | None = None) -> TrainResult:
    """Distil ``teacher`` into ``student`` (its SFT baseline) with ``cfg.method`` for ``cfg.steps`` steps.

    ``cfg`` comes from :meth:`TrainConfig.from_profile` with a distillation method; ``pt_texts`` is
    ``D_PT`` (needed by ``paper`` unless ``lm`` is ablated). Returns the trained student (LoRA-wrapped
    under LoRA profiles).
    """

    def collate(mode: str) -> Collator:
        return train_collator(student, tokenizer, image_processor, cfg, mode)

    return distill_records(student, teacher, tokenizer, study.train, collate, cfg, profile, run_dir, pt_texts,
                           resume, device)


def distill_records(student: nn.Module, teacher: nn.Module, tokenizer: Any, records: Sequence[Any],
                    collate: Callable[[str], Callable[[list[Any]], dict[str, Tensor]]], cfg: TrainConfig,
                    profile: Profile, run_dir: Path, pt_texts: Sequence[str] = (), resume: bool = False,
                    device: str | torch.device | None = None) -> TrainResult:
    """The one distillation run, multimodal or text-only: the records and ``collate(mode)`` decide.

    ``collate("train")`` batches ground-truth records, ``collate("generate")`` left-padded prompts;
    a multimodal collator adds ``pixel_values``, which every forward then passes on (a text-only
    pair is the same run without image features).
    """
    if cfg.method in SFT_METHODS:
        raise ValueError(f"distill trains a distillation method; use train_sft for {cfg.method}")
    check_same_vocab(teacher, student)
    accelerator = make_accelerator(cfg, device)
    set_seed(cfg.seed)
    if cfg.method == "align_kd":  # attention maps need eager attention
        for model in (student, teacher):
            model.set_attn_implementation("eager")
    freeze(teacher).to(accelerator.device)
    student = apply_lora(student, profile.lora)
    objective = build_objective(student, teacher, cfg)
    if cfg.method == "paper":
        task: Any = RolloutTask(objective, records, collate("generate"), pt_texts, tokenizer, cfg, accelerator)
    else:
        task = GroundTruthTask(objective, records, collate("train"), cfg, accelerator)
    metrics = run_task(task, cfg, profile, run_dir, accelerator, resume)
    return TrainResult(student.eval(), metrics, cfg)
