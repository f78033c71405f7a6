"""Layer-similarity measures of Align-KD's Fig. 2 (a-c) (Align-KD, Sec. 3).

Align-KD finds that in a VLM the first and the last transformer layers change the features
most, and that the first layer is where vision and text tokens are brought together. Three
measures test that claim on any model's hidden states:

(a) cosine similarity of each pair of adjacent layers' features (input embeddings included),
(b) cosine similarity of vision and text token features within each layer,
(c) normalised Euclidean distance of vision and text token features within each layer.

``hidden_states`` is what a transformers model returns with ``output_hidden_states=True``:
``L + 1`` tensors ``[B, S, D]`` (the embeddings, then each layer's output). Masks are
``[B, S]`` booleans: which positions are real tokens, vision tokens, text tokens.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def _stack(hidden_states: Sequence[Tensor]) -> Tensor:
    """``L + 1`` tensors ``[B, S, D]`` -> one float32 tensor ``[L + 1, B, S, D]``."""
    return torch.stack([h.detach().float() for h in hidden_states])


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over positions: ``x [L, B, S, D]``, ``mask [B, S]`` -> ``[L, B, D]``."""
    m = mask.to(x.dtype)[None, :, :, None]
    return (x * m).sum(2) / m.sum(2).clamp_min(1.0)


def adjacent_layer_cosine(hidden_states: Sequence[Tensor], mask: Tensor) -> Tensor:
    """Fig. 2(a): ``s_l = mean_{b,t in mask} cos(h_l[b,t], h_{l+1}[b,t])`` for ``l = 0..L-1``.

    Returns ``[L]``: entry ``l`` compares the input of layer ``l + 1`` with its output, so
    entry 0 measures the first layer and entry ``L - 1`` the last one.
    """
    h = _stack(hidden_states)
    cos = F.cosine_similarity(h[:-1], h[1:], dim=-1)  # [L, B, S]
    m = mask.to(cos.dtype)[None]
    return (cos * m).sum((1, 2)) / m.sum((1, 2)).clamp_min(1.0)


def vision_text_cosine(hidden_states: Sequence[Tensor], vision_mask: Tensor, text_mask: Tensor) -> Tensor:
    """Fig. 2(b): ``cos(mean_vision h_l, mean_text h_l)`` per layer, averaged over the batch; ``[L + 1]``.

    The vision and text features of a sample are the means of its vision-token and
    text-token hidden states at that layer.
    """
    h = _stack(hidden_states)
    return F.cosine_similarity(_masked_mean(h, vision_mask), _masked_mean(h, text_mask), dim=-1).mean(1)


def vision_text_distance(hidden_states: Sequence[Tensor], vision_mask: Tensor, text_mask: Tensor) -> Tensor:
    """Fig. 2(c): ``|| v/|v| - t/|t| || / 2`` per layer with ``v``, ``t`` the mean vision/text features; ``[L + 1]``.

    Normalising both means to unit length makes layers of different scale comparable; the
    division by 2 puts the distance in ``[0, 1]`` (0: same direction, 1: opposite).
    It equals ``sqrt((1 - cos) / 2)``, a monotone transform of (b) on each sample.
    """
    h = _stack(hidden_states)
    v = F.normalize(_masked_mean(h, vision_mask), dim=-1)
    t = F.normalize(_masked_mean(h, text_mask), dim=-1)
    return ((v - t).norm(dim=-1) / 2).mean(1)
