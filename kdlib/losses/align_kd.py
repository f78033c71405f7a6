"""Align-KD (CVPR 2025; code fqhank/Align-KD, ``docs/methods.md`` §4): alignment knowledge.

Two losses:

* **first-layer text-query -> vision-key attention** (paper Sec. 3.2): the MSE between the
  teacher's and the student's first decoder-layer attention probabilities, restricted to the
  block ``A_{t-v}`` whose **rows are text queries and columns are vision keys**. The public
  code builds the transposed block (vision queries x text keys), which a causal mask zeroes
  when the image precedes the text; kdlib builds the paper's block explicitly.
* **visual-token enhancement** of the projector MSE (code ``get_v_loss``, ``k = 16``): the
  ``k`` visual tokens that the teacher's first layer attends to most get their squared error
  counted twice, ``L_v = MSE(all tokens) + MSE(top-k tokens)``.

Both terms are element means, as Align-KD's code computes them (``F.mse_loss``: the average over
every selected entry; paper "Align-KD: Distilling Cross-Modal Alignment Knowledge for Mobile
Vision-Language Model", https://github.com/fqhank/Align-KD), not kdlib's Eq. 4 per-token
half-sum over features, which would make ``L_v`` ``D / 2`` times larger than the attention term.

Attentions are ``[B, H, L, L]`` probabilities (``output_attentions=True``, eager attention);
``vision_mask`` / ``text_mask`` are ``[B, L]`` booleans marking image-token and text-token
positions (padding in neither). Both models must see the same token layout.
"""

from __future__ import annotations

import torch
from torch import nn

from kdlib.losses.projector import WidthMap, projector_mse

Tensor = torch.Tensor


class HeadMap(nn.Module):
    """Learned 1x1 map over the head axis, ``[B, H_T, L, L] -> [B, H_S, L, L]`` (Align-KD ``attn_adapter``).

    Align-KD uses ``Conv2d(32, 16, kernel_size=1)``; this is the same linear map over heads,
    without bias (attention maps are probabilities), initialised to average consecutive groups
    of teacher heads (exact head-averaging when ``H_T`` is a multiple of ``H_S``).
    ``trainable=True`` (kdlib's default) lets the loss update the map; Align-KD's public code
    never passes its adapter to an optimiser, so its map stays at initialisation, which
    ``trainable=False`` reproduces (with the group-mean initialisation, not Conv2d's random one).
    A trained map can shrink the term by fitting the teacher to the student, hence the switch.
    """

    def __init__(self, teacher_heads: int, student_heads: int, trainable: bool = True) -> None:
        super().__init__()
        if teacher_heads <= 0 or student_heads <= 0:
            raise ValueError(f"HeadMap: head counts must be positive, got {teacher_heads} -> {student_heads}")
        group = torch.arange(teacher_heads) * student_heads // teacher_heads
        init = (group[None, :] == torch.arange(student_heads)[:, None]).float()
        self.weight = nn.Parameter(init / init.sum(1, keepdim=True).clamp_min(1.0), requires_grad=trainable)

    def forward(self, attn: Tensor) -> Tensor:
        if attn.shape[1] != self.weight.shape[1]:
            raise ValueError(f"HeadMap expects {self.weight.shape[1]} heads, got attention {tuple(attn.shape)}")
        return torch.einsum("st,btqk->bsqk", self.weight.to(attn.dtype), attn)


def text_vision_block(vision_mask: Tensor, text_mask: Tensor) -> Tensor:
    """``[B, L, L]`` boolean selecting ``A_{t-v}``: entry ``(q, k)`` is true iff ``q`` is text and ``k`` is vision."""
    if vision_mask.shape != text_mask.shape:
        raise ValueError(f"vision mask {tuple(vision_mask.shape)} and text mask {tuple(text_mask.shape)} differ")
    if (vision_mask.bool() & text_mask.bool()).any():
        raise ValueError("a position is marked both vision and text")
    return text_mask.bool()[:, :, None] & vision_mask.bool()[:, None, :]


def _match_heads(student_attn: Tensor, teacher_attn: Tensor, head_map: HeadMap | None) -> tuple[Tensor, Tensor]:
    """Same head count on both sides: ``head_map`` on the teacher, else both averaged over heads."""
    if head_map is not None:
        return student_attn, head_map(teacher_attn)
    if student_attn.shape[1] == teacher_attn.shape[1]:
        return student_attn, teacher_attn
    return student_attn.mean(1, keepdim=True), teacher_attn.mean(1, keepdim=True)


def attention_mse(student_attn: Tensor, teacher_attn: Tensor, vision_mask: Tensor, text_mask: Tensor,
                  head_map: HeadMap | None = None) -> Tensor:
    """``L_attn = mean over heads and (text q, vision k) of (A_T^1[q, k] - A_S^1[q, k])^2`` (float32).

    ``student_attn [B, H_S, L, L]``, ``teacher_attn [B, H_T, L, L]``; an element mean, as Align-KD.
    Head mismatch: a :class:`HeadMap` (trainable or frozen, see there) maps the teacher's heads onto the
    student's; without one, both maps are averaged over heads first. Sequence lengths must agree
    (same tokens in both models), else ``ValueError``. 0 when no text-vision pair exists.
    """
    if student_attn.dim() != 4 or teacher_attn.dim() != 4:
        raise ValueError("attentions must be [B, H, L, L]")
    if student_attn.shape[0] != teacher_attn.shape[0] or student_attn.shape[2:] != teacher_attn.shape[2:]:
        raise ValueError(f"student attention {tuple(student_attn.shape)} and teacher attention "
                         f"{tuple(teacher_attn.shape)} cover different batches or sequence lengths")
    block = text_vision_block(vision_mask, text_mask)
    if block.shape != student_attn.shape[:1] + student_attn.shape[2:]:
        raise ValueError(f"masks {tuple(vision_mask.shape)} do not fit attention {tuple(student_attn.shape)}")
    s, t = _match_heads(student_attn.float(), teacher_attn.detach().float(), head_map)
    sq = (t - s).pow(2) * block[:, None]
    return sq.sum() / (block.sum() * s.shape[1]).clamp_min(1)


def teacher_attended_tokens(teacher_attn: Tensor, vision_mask: Tensor, text_mask: Tensor, k: int = 16) -> Tensor:
    """Indices ``[B, k]`` (into the visual-token sequence) of the ``k`` most attended visual tokens.

    Attention received by each vision key = teacher first-layer attention averaged over heads and
    summed over the text queries. Align-KD's code sums over *all* queries and takes the top-k over
    *all* keys (so BOS/attention sinks can win, and indices are shifted by hand); here rows are
    text queries and candidates are vision keys only. Every sample needs the same number ``N``
    of vision positions, in order.
    """
    n = vision_mask.sum(1)
    if (n != n[0]).any():
        raise ValueError(f"samples have different numbers of vision positions: {n.tolist()}")
    if not 0 < k <= int(n[0]):
        raise ValueError(f"k = {k} must be in [1, {int(n[0])}] (the number of visual tokens)")
    block = text_vision_block(vision_mask, text_mask)
    received = (teacher_attn.detach().float().mean(1) * block).sum(1)  # [B, L]: per key
    per_token = received[vision_mask.bool()].view(vision_mask.shape[0], -1)  # [B, N]
    return per_token.topk(k, dim=1).indices


def enhanced_projector_mse(student_feats: Tensor, teacher_feats: Tensor, teacher_attn: Tensor, vision_mask: Tensor,
                           text_mask: Tensor, k: int = 16, width_map: WidthMap | None = None) -> Tensor:
    """Align-KD's visual-token enhancement ``L_v = L_align(all) + L_align(top-k)`` on projector outputs.

    ``student_feats [B, N, Ds]``, ``teacher_feats [B, N, Dt]``; each term is Align-KD's element mean
    ``mean_{b, n, d} (A(z_T) - z_S)^2`` over its tokens, i.e. :func:`~kdlib.losses.projector.projector_mse`
    (Eq. 4: per-token half-sum over ``Ds`` features) times ``2 / Ds``.
    Samples without text tokens contribute only the all-token term (as the code does).
    """
    idx = teacher_attended_tokens(teacher_attn, vision_mask, text_mask, k)
    has_text = text_mask.bool().any(1)[:, None].expand(-1, k)
    top_s, top_t = (_gather_tokens(x, idx) for x in (student_feats, teacher_feats))
    total = projector_mse(student_feats, teacher_feats, width_map) + projector_mse(top_s, top_t, width_map, has_text)
    return total * (2.0 / student_feats.shape[-1])


def _gather_tokens(feats: Tensor, index: Tensor) -> Tensor:
    """``feats [B, N, D]``, ``index [B, k]`` -> ``[B, k, D]``."""
    return feats.gather(1, index[..., None].expand(-1, -1, feats.shape[-1]))
