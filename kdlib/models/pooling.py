"""A frozen ViT whose patch grid is average-pooled to ``g x g`` tokens (``profile.vision.pool_grid``).

The ``small`` profile feeds DINOv2 ViT-S/14 at 224 px (a 16 x 16 patch grid) to the LLM as
``g = 8``, i.e. 64 visual tokens instead of 256. The pooling lives in a vision-tower module,
so ``LlavaForConditionalGeneration`` itself is unchanged: its ``get_image_features`` still takes
hidden layer ``vision_feature_layer`` of the tower, drops the first token (CLS, strategy
``"default"``) and applies the projector. :class:`PooledVisionTower` wraps any ViT
(``tower``) and returns, for every hidden state it is asked for,

    [h_CLS ; pool_g(h_patches)]   with   pool_g(h)[i, j] = mean of h over the patches of cell (i, j)

where ``h_patches [B, S*S, D]`` are the ``S x S`` patch tokens in row-major order (CLS kept in
front, register tokens dropped) and cell ``(i, j)`` covers patch rows ``[i S/g, (i+1) S/g)`` and
columns ``[j S/g, (j+1) S/g)`` (``torch.nn.functional.adaptive_avg_pool2d``; ``g`` must divide
``S`` so that every output token averages the same ``(S/g)^2`` patches).

The wrapper has its own config type (``kdlib_pooled_vision``), registered with transformers'
``AutoConfig`` / ``AutoModel`` when :mod:`kdlib.models` is imported, so ``save_mllm`` writes it
into ``config.json`` and ``load_mllm`` rebuilds the same model. Its ``image_size`` is the input
side in pixels and its ``patch_size`` the pixel side of one *output* token (``image_size / g``),
so ``(image_size / patch_size)^2 = g^2`` image tokens, as for any LLaVA tower.

Cached features: a frozen tower gives the same projector inputs for an image every time.
:func:`projector_inputs` computes them (``[B, g^2, D_v]``) and the tower accepts them in place of
the pixels (a rank-3 ``pixel_values``), skipping the ViT, so every forward of the training code
works unchanged on cached features (:mod:`kdlib.models.feature_cache`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import BaseModelOutputWithPooling

from kdlib.models.lora import unwrap

MODEL_TYPE = "kdlib_pooled_vision"


def pool_patch_grid(patches: Tensor, grid: int) -> Tensor:
    """``[B, S*S, D]`` row-major patch tokens -> ``[B, grid*grid, D]``, adaptive average pooling."""
    batch, n, dim = patches.shape
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{n} patch tokens do not form a square grid")
    image = patches.transpose(1, 2).reshape(batch, dim, side, side)
    return F.adaptive_avg_pool2d(image, grid).flatten(2).transpose(1, 2)


def pool_hidden_state(hidden: Tensor, num_patches: int, grid: int) -> Tensor:
    """``[B, P + N, D]`` (P prefix tokens: CLS first, then registers; N patches) -> ``[B, 1 + g^2, D]``:
    CLS kept in front, registers dropped, the patch grid pooled to ``g x g``."""
    prefix = hidden.shape[1] - num_patches
    if prefix < 1:
        raise ValueError(f"hidden state of {hidden.shape[1]} tokens has no CLS before its {num_patches} patches")
    return torch.cat([hidden[:, :1], pool_patch_grid(hidden[:, prefix:], grid)], dim=1)


class PooledVisionConfig(PreTrainedConfig):
    """A ViT config (``tower_config``) seen through a ``pool_grid x pool_grid`` token grid."""

    model_type = MODEL_TYPE
    sub_configs_defaults = {"tower_config": SubConfigSpec(config_class=AutoConfig, model_type="clip_vision_model")}

    tower_config: dict | PreTrainedConfig | None = None
    image_size: int = 224  # input side in pixels (the processor's crop)
    pool_grid: int = 1  # output tokens per side

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        tower_patch = self.tower_config.patch_size
        if self.image_size <= 0 or self.image_size % tower_patch:
            raise ValueError(f"vision.image_size {self.image_size} is not a positive multiple of the tower's "
                             f"patch size {tower_patch}")
        side = self.patch_grid
        if self.pool_grid < 1 or side % self.pool_grid:
            divisors = [d for d in range(1, side + 1) if side % d == 0]
            raise ValueError(f"vision.pool_grid={self.pool_grid} must divide the {side} x {side} patch grid "
                             f"({self.image_size} px / patch {tower_patch}); choose one of {divisors}")

    @property
    def patch_grid(self) -> int:
        """``S``: patches per side of the tower's grid."""
        return self.image_size // self.tower_config.patch_size

    @property
    def patch_size(self) -> int:
        """Pixel side of one output token, ``image_size / pool_grid``."""
        return self.image_size // self.pool_grid

    @property
    def hidden_size(self) -> int:
        """``D_v``, the width of the tower's tokens (the projector's input)."""
        return self.tower_config.hidden_size

    @property
    def num_hidden_layers(self) -> int:
        return self.tower_config.num_hidden_layers


class PooledVisionTower(PreTrainedModel):
    """``tower`` (any ViT with CLS first) whose hidden states are pooled to ``pool_grid^2`` patch tokens."""

    config_class = PooledVisionConfig
    base_model_prefix = "pooled_vision"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(self, config: PooledVisionConfig) -> None:
        super().__init__(config)
        self.tower = AutoModel.from_config(config.tower_config)
        self.post_init()

    def forward(self, pixel_values: Tensor, output_hidden_states: bool | int | list[int] | None = None,
                **kwargs: Any) -> BaseModelOutputWithPooling:
        """Images ``[B, 3, H, W]`` -> the tower's outputs with pooled token grids (module docstring).

        A rank-3 ``pixel_values`` ``[B, g^2, D_v]`` holds cached :func:`projector_inputs`: the tower is
        skipped and they are returned (behind a zero CLS) as the one hidden state asked for (as every
        hidden state when all are asked for: only the feature layer of LLaVA's config is read).
        """
        kwargs.pop("return_dict", None)
        if pixel_values.dim() == 3:
            return self._from_features(pixel_values, output_hidden_states)
        out = self.tower(pixel_values, output_hidden_states=output_hidden_states, return_dict=True, **kwargs)
        cfg = self.config
        n, g = cfg.patch_grid ** 2, cfg.pool_grid
        hidden = (None if out.hidden_states is None else
                  tuple(None if h is None else pool_hidden_state(h, n, g) for h in out.hidden_states))
        return BaseModelOutputWithPooling(last_hidden_state=pool_hidden_state(out.last_hidden_state, n, g),
                                          pooler_output=out.pooler_output, hidden_states=hidden)

    def _from_features(self, features: Tensor, selection: Any) -> BaseModelOutputWithPooling:
        expected = (self.config.pool_grid ** 2, self.config.hidden_size)
        if tuple(features.shape[1:]) != expected:
            raise ValueError(f"cached vision features must be [B, {expected[0]}, {expected[1]}], "
                             f"got {list(features.shape)}")
        state = torch.cat([features.new_zeros(features.shape[0], 1, features.shape[2]), features], 1)
        if selection is True:  # transformers >= 5.24 asks for all layers and reads its feature layer
            return BaseModelOutputWithPooling(hidden_states=(state,) * (self.config.num_hidden_layers + 1))
        if isinstance(selection, bool) or not isinstance(selection, int):
            raise ValueError(f"cached vision features are one hidden layer's; the caller asked for {selection!r}")
        states: list[Tensor | None] = [None] * (self.config.num_hidden_layers + 1)
        states[selection] = state
        return BaseModelOutputWithPooling(hidden_states=tuple(states))


AutoConfig.register(MODEL_TYPE, PooledVisionConfig, exist_ok=True)
AutoModel.register(PooledVisionConfig, PooledVisionTower, exist_ok=True)


def inner_tower(model: Any) -> torch.nn.Module:
    """The ViT of a LLaVA model (inside the pooling wrapper when there is one)."""
    tower = unwrap(model).model.vision_tower
    return tower.tower if isinstance(tower, PooledVisionTower) else tower


def feature_layer(model: Any) -> int:
    """The one hidden layer of ``model``'s vision tower that feeds its projector (``vision_feature_layer``);
    ``ValueError`` unless there is one and the CLS token is dropped (strategy ``"default"``)."""
    config = unwrap(model).config
    if not isinstance(config.vision_feature_layer, int) or config.vision_feature_select_strategy != "default":
        raise ValueError(f"projector inputs need one feature layer and strategy 'default', got "
                         f"{config.vision_feature_layer!r} / {config.vision_feature_select_strategy!r}")
    return config.vision_feature_layer


def pooled_tower(model: Any) -> PooledVisionTower:
    """The pooled tower of ``model``; ``ValueError`` unless its features can stand in for pixels
    (pooled tower, one feature layer, CLS dropped)."""
    tower = unwrap(model).model.vision_tower
    if not isinstance(tower, PooledVisionTower):
        raise ValueError("cached vision features need a pooled vision tower (profile vision.pool_grid > 0)")
    feature_layer(model)
    return tower


def projector_inputs(model: Any, pixel_values: Tensor) -> Tensor:
    """What the projector of ``model`` receives for images ``[B, 3, S, S]``: ``[B, N, D_v]``.

    Hidden layer ``vision_feature_layer`` of the vision tower without its CLS (strategy
    ``"default"``): ``N = g^2`` pooled tokens for a pooled tower, whose result can be passed as
    ``pixel_values`` to skip the tower (the cache's contract), else every patch token.
    """
    layer = feature_layer(model)
    tower = unwrap(model).model.vision_tower
    with torch.no_grad():
        out = tower(pixel_values.to(tower.device, tower.dtype), output_hidden_states=layer)
    return out.hidden_states[layer][:, 1:]
