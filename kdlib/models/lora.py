"""What trains: LoRA on the LLM (GeoChat's recipe), full fine-tuning, or nothing (the teacher).

GeoChat fine-tunes with LoRA on every ``nn.Linear`` of the LLM except ``lm_head``, rank 64,
alpha 16, dropout 0.05, bias none (``geochat/train/train.py`` ``find_all_linear_names`` L163-177
and the LoRA defaults L101-105, commit 4850920e; ``docs/methods.md`` §3.1), with the CLIP tower frozen.
For the projector MSE of Eq. 4 the student's projector must train too, so :func:`apply_lora`
unfreezes it. ``profile.lora.r == 0`` means full fine-tuning of LLM + projector (``tiny``).

A LoRA layer computes ``y = W x + (alpha / r) B A x`` (``A``: r x in, ``B``: out x r, ``B = 0``
at start, so the wrapped model starts equal to the base model).
"""

from __future__ import annotations

from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from torch import nn
from transformers import LlavaForConditionalGeneration

from kdlib.profiles import LoRASpec


def unwrap(model: Any) -> LlavaForConditionalGeneration:
    """The ``LlavaForConditionalGeneration`` inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


def llm_linear_names(model: Any) -> list[str]:
    """Full names of every ``nn.Linear`` of the LLM (``lm_head``, projector and tower excluded).

    The LLM is ``model.language_model`` of a LLaVA model, ``model`` of a plain causal LM.
    """
    decoder = unwrap(model).model
    llm, prefix = (decoder.language_model, "model.language_model") if is_multimodal(model) else (decoder, "model")
    return [f"{prefix}.{name}" for name, mod in llm.named_modules() if isinstance(mod, nn.Linear)]


def is_multimodal(model: Any) -> bool:
    """True for a LLaVA-style model (vision tower + projector), False for a plain causal LM."""
    return hasattr(unwrap(model).model, "vision_tower")


def apply_lora(model: LlavaForConditionalGeneration, lora_spec: LoRASpec) -> Any:
    """Make ``model`` trainable as ``lora_spec`` says; returns the model to optimise.

    ``r > 0``: a peft ``PeftModel`` with LoRA adapters on :func:`llm_linear_names`, trainable
    adapters and projector, everything else frozen. ``r == 0``: the same model with LLM and
    projector trainable. The vision tower is frozen in both cases. A plain causal LM is the same
    without tower and projector.
    """
    if isinstance(model, PeftModel):
        raise ValueError("apply_lora: the model already carries LoRA adapters")
    if lora_spec.r > 0:
        config = LoraConfig(r=lora_spec.r, lora_alpha=lora_spec.alpha, lora_dropout=lora_spec.dropout,
                            target_modules=llm_linear_names(model), bias="none")
        model = get_peft_model(model, config)
    else:
        model.requires_grad_(True)
    if is_multimodal(model):
        base = unwrap(model)
        base.model.vision_tower.requires_grad_(False)
        base.model.multi_modal_projector.requires_grad_(True)
    return model


def projector_only(model: LlavaForConditionalGeneration) -> LlavaForConditionalGeneration:
    """Make the projector the only trainable part (LLaVA's stage 1: tower and LLM frozen)."""
    if not is_multimodal(model):
        raise ValueError("projector_only: the model has no projector (a plain causal LM)")
    model.requires_grad_(False)
    unwrap(model).model.multi_modal_projector.requires_grad_(True)
    return model


def freeze(model: Any) -> Any:
    """Freeze ``model`` for use as a teacher: no parameter requires grad, eval mode (no dropout)."""
    model.requires_grad_(False)
    model.eval()
    return model


def trainable_parameters(model: Any) -> dict[str, nn.Parameter]:
    """Name -> parameter for every parameter that requires grad (what the optimiser gets)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def merged_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """State dict of the plain model, LoRA deltas folded in: ``W' = W + (alpha / r) B A``.

    For a model without adapters this is its state dict. The model itself is not modified
    (no ``merge_and_unload``), so training can go on after a checkpoint.
    """
    base = unwrap(model)
    if not isinstance(model, PeftModel):
        return base.state_dict()
    state: dict[str, torch.Tensor] = {}
    for key, value in base.state_dict().items():
        if "lora_" not in key:
            state[key.replace(".base_layer.", ".")] = value
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer):
            weight = module.get_base_layer().weight
            with torch.no_grad():
                delta = sum(module.get_delta_weight(a) for a in module.active_adapters)
            state[f"{name}.weight"] = (weight + delta).to(weight.dtype)
    return state
