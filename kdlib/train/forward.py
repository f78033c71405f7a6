"""Forward passes that stop before the vocabulary: hidden states, projector outputs, chunked log-probs.

The training losses never need the full ``[B, L, V]`` logits of both models: a forward here asks
the model for its last hidden states (``output_hidden_states``, final norm applied) and only
one position of logits (``logits_to_keep=1``); the heads are applied later, on response
positions only, either inside :func:`~kdlib.losses.chunked.chunked_divergence` or by
:func:`token_logprobs_chunked` (per-chunk activation checkpointing, so at most one
``[chunk, V]`` block is alive at a time, in forward and in backward).

Positions follow :func:`kdlib.sampling.position_ids` (``cumsum(mask) - 1``), so a forward on a
left-padded rollout reproduces the log-probabilities seen while sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from kdlib.models.features import image_inputs, output_projector
from kdlib.sampling import position_ids


@dataclass(frozen=True)
class Features:
    """What a loss needs from one forward pass."""

    hidden: Tensor  # [B, L, D] last hidden states (after the final norm)
    visual: Tensor | None  # [B, N, D] projector outputs (the LLM's visual tokens), None without images
    attention: Tensor | None  # [B, H, L, L] first decoder layer attention probabilities, when asked


def output_head(model: nn.Module) -> nn.Linear:
    """The model's vocabulary projection (``lm_head``), unwrapped from adapters such as LoRA."""
    head = model.get_output_embeddings()
    base = getattr(head, "base_layer", head)
    if not isinstance(base, nn.Linear):
        raise TypeError(f"expected a linear output head, got {type(head).__name__}")
    return base


def features(model: nn.Module, input_ids: Tensor | None, attention_mask: Tensor, pixel_values: Tensor | None = None,
             inputs_embeds: Tensor | None = None, first_layer_attention: bool = False) -> Features:
    """Run ``model`` (LLaVA-style or a plain causal LM, or a PEFT wrapper) and keep hidden states and visual tokens.

    ``input_ids`` / ``attention_mask`` ``[B, L]`` (or ``inputs_embeds`` ``[B, L, D]``), ``pixel_values``
    ``[B, C, H, W]`` (None for text-only batches: ``visual`` is then None). ``first_layer_attention`` needs eager attention.
    """
    out = model(input_ids=input_ids, inputs_embeds=inputs_embeds, **image_inputs(pixel_values),
                attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                output_hidden_states=True, output_attentions=first_layer_attention, logits_to_keep=1,
                use_cache=False)
    visual = output_projector(out, attention_mask.shape[0])
    attention = out.attentions[0] if first_layer_attention else None
    return Features(out.hidden_states[-1], visual, attention)


def _chunk_logprobs(hidden: Tensor, weight: Tensor, bias: Tensor | None, tokens: Tensor) -> Tensor:
    z = F.linear(hidden, weight, bias).float()
    return z.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(z, dim=-1)


def token_logprobs_chunked(hidden: Tensor, head: nn.Linear, tokens: Tensor, chunk_size: int) -> Tensor:
    """``log softmax(head(hidden))[token]`` per row: ``[N, D], [N] -> [N]`` float32, with gradient.

    Rows are processed ``chunk_size`` at a time under activation checkpointing: the chunk's
    logits are recomputed in backward instead of being stored (one extra head matmul).
    """
    if hidden.shape[0] != tokens.shape[0]:
        raise ValueError(f"{hidden.shape[0]} hidden rows but {tokens.shape[0]} tokens")
    parts = [checkpoint(_chunk_logprobs, hidden[i:i + chunk_size], head.weight, head.bias,
                        tokens[i:i + chunk_size], use_reentrant=False)
             for i in range(0, hidden.shape[0], chunk_size)]
    return torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)


def shift_for_labels(hidden: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Rows that predict a scored label: ``(hidden [N, D], targets [N], mask [B, L-1])``.

    Causal shift: ``hidden[:, t]`` predicts ``labels[:, t + 1]``; rows whose label is -100 are dropped.
    """
    mask = labels[:, 1:] != -100
    return hidden[:, :-1][mask], labels[:, 1:][mask], mask


def response_rows(hidden: Tensor, prompt_len: int, mask: Tensor) -> Tensor:
    """Hidden states that predict the response tokens of a rollout: ``[B, P + T, D] -> [N, D]``.

    Token ``t`` of the response sits at ``P + t`` and is predicted from position ``P + t - 1``;
    only rows with ``mask [B, T]`` set are kept (in row-major order, like ``tokens[mask]``).
    """
    steps = mask.shape[1]
    return hidden[:, prompt_len - 1:prompt_len - 1 + steps][mask.bool()]
