"""One interface for every model: image + text in; logits, hidden states, attentions and z(x) out.

Everything comes from ``LlavaForConditionalGeneration`` itself (no model code is copied):

- ``z(x)`` of Eq. 4, the projector output ``[B, N, D]``: ``model.get_image_features`` (tower ->
  hidden layer ``vision_feature_layer`` -> CLS dropped -> projector), or, inside a forward, what
  the output carries (:func:`output_projector`: its place moved in transformers 5.24).
- per-layer hidden states: ``output_hidden_states=True`` -> ``L + 1`` tensors ``[B, T, D]``
  (embeddings, then after each decoder layer; ``T`` counts the ``N`` image positions).
- attention maps (Align-KD uses layer 1): ``output_attentions=True`` -> ``L`` tensors
  ``[B, H, T, T]`` of post-softmax probabilities. Only the ``eager`` implementation returns
  them (SDPA returns None): load with ``attn_implementation="eager"``.
- the KV cache of incremental decoding: argument and output field :data:`CACHE_FIELD`
  (``past_key_values`` up to transformers 5.23, ``cache`` from 5.24).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LlavaForConditionalGeneration

from kdlib.models.lora import unwrap


@dataclass
class MLLMOutput:
    logits: torch.Tensor  # [B, T, V]
    projector: torch.Tensor | None  # z(x): [B, N, D], None without pixel_values
    hidden_states: tuple[torch.Tensor, ...] | None  # L + 1 x [B, T, D]
    attentions: tuple[torch.Tensor, ...] | None  # L x [B, H, T, T]
    past_key_values: Any = None


CACHE_FIELD = "cache" if "cache" in inspect.signature(LlavaForConditionalGeneration.forward).parameters \
    else "past_key_values"
"""Name of the KV cache in a LLaVA forward's arguments and outputs, for the installed transformers."""


def image_inputs(pixel_values: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The image keyword of a forward: ``{"pixel_values": ...}``, or nothing for a text-only batch
    (a plain causal LM takes no ``pixel_values``)."""
    return {} if pixel_values is None else {"pixel_values": pixel_values}


def num_image_tokens(model: Any) -> int:
    """``N`` image tokens per image: ``(image_size / patch_size)^2`` (+1 when CLS is kept)."""
    config = unwrap(model).config
    vision = config.vision_config
    n = (vision.image_size // vision.patch_size) ** 2
    return n + (config.vision_feature_select_strategy == "full")


def projector_features(model: Any, pixel_values: torch.Tensor) -> torch.Tensor:
    """z(x) of Eq. 4: projector outputs ``[B, N, D]`` for images ``[B, 3, S, S]``."""
    base = unwrap(model)
    dtype = base.model.vision_tower.dtype
    features = base.model.get_image_features(pixel_values=pixel_values.to(dtype)).pooler_output
    return torch.stack(list(features))


def output_projector(out: Any, batch_size: int) -> torch.Tensor | None:
    """The projector outputs ``[B, N, D]`` of a LLaVA forward's output, None when it saw no image.

    transformers 5.23 returns them flattened, ``image_hidden_states [B * N, D]``; 5.24 keeps them in
    ``image_outputs.pooler_output`` (one ``[N, D]`` per image) and deprecates the old name.
    """
    image_outputs = getattr(out, "image_outputs", None)
    visual = image_outputs.pooler_output if image_outputs is not None else getattr(out, "image_hidden_states", None)
    if visual is None:
        return None
    if isinstance(visual, (list, tuple)):
        visual = torch.cat(list(visual))
    return visual.reshape(batch_size, -1, visual.shape[-1])


def attention_implementation(model: Any) -> str:
    return str(unwrap(model).model.language_model.config._attn_implementation)


def mllm_forward(model: Any, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, *, hidden_states: bool = False,
                 attentions: bool = False, past_key_values: Any = None, use_cache: bool = False) -> MLLMOutput:
    """One forward of teacher or student.

    ``input_ids [B, T]`` hold ``N`` copies of the image token per image (``pixel_values
    [B, 3, S, S]``); later decoding steps pass only the new tokens with ``past_key_values``
    and no ``pixel_values``.
    """
    if attentions and attention_implementation(model) != "eager":
        raise ValueError(f"attention maps need attn_implementation='eager' (this model uses "
                         f"{attention_implementation(model)!r}): load_mllm(..., attn_implementation='eager') "
                         "or model.set_attn_implementation('eager')")
    out = model(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask,
                output_hidden_states=hidden_states, output_attentions=attentions,
                use_cache=use_cache, **{CACHE_FIELD: past_key_values})
    projector = output_projector(out, input_ids.shape[0])
    return MLLMOutput(out.logits, projector, out.hidden_states if hidden_states else None,
                      out.attentions if attentions else None, getattr(out, CACHE_FIELD) if use_cache else None)
