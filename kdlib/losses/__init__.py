"""Distillation losses: divergences, MiniLLM terms, projector/attention alignment, BiLD, chunked variants."""

from kdlib.losses.align_kd import HeadMap, attention_mse, enhanced_projector_mse, teacher_attended_tokens
from kdlib.losses.chunked import chunked_divergence, chunked_reverse_kl
from kdlib.losses.divergences import (
    IGNORE_INDEX,
    cross_entropy,
    forward_kl,
    generalized_jsd,
    kd_objective,
    reduce_tokens,
    reverse_kl,
    skew_kl,
    token_logprobs,
)
from kdlib.losses.minillm import (
    MiniLLMConfig,
    clip_fraction,
    importance_weights,
    lm_loss,
    pg_loss,
    returns,
    single_step_loss,
    single_step_weights,
    token_rewards,
)
from kdlib.losses.projector import WidthMap, projector_mse
from kdlib.losses.switch_kd import bild, dbild, kneedle_k, switch_pair, visual_switch_inputs

__all__ = [
    "IGNORE_INDEX", "HeadMap", "MiniLLMConfig", "WidthMap", "attention_mse", "bild", "chunked_divergence",
    "chunked_reverse_kl", "clip_fraction", "cross_entropy", "dbild", "enhanced_projector_mse", "forward_kl", "generalized_jsd",
    "importance_weights", "kneedle_k", "kd_objective", "lm_loss", "pg_loss", "projector_mse", "reduce_tokens", "returns",
    "reverse_kl", "single_step_loss", "single_step_weights", "skew_kl", "switch_pair", "teacher_attended_tokens", "token_logprobs", "token_rewards",
    "visual_switch_inputs",
]
