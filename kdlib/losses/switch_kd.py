"""Switch-KD (``docs/methods.md`` §5): BiLD, DBiLD and the visual-switch input.

**BiLD** (Li et al., COLING 2025; fpcsong/BiLD ``distil_losses/BILD.py``). For each token pick
``k`` vocabulary entries by the *selector's* top-k logits (the teacher's: t-LD; the student's:
s-LD), gather both models' logits there, divide by the temperature ``tau`` and form the
``k(k-1)/2`` pairwise differences ``d_ij = z_i - z_j`` (``i < j`` in the selector's ranking).
The loss of one direction is ``KL(softmax(d^T) || softmax(d^S))`` over the pairs;
``L_BiLD = L_tLD + L_sLD``, each averaged over counted tokens.

**DBiLD** (Switch-KD; its equations are not public, this is *our reading* of the README): as
BiLD but with a per-token ``k`` found by Kneedle on the selector's sorted top-``k_max`` logits
and, by default, the reverse direction ``KL(softmax(d^S) || softmax(d^T))``.

**Visual switch**: the student's projector outputs, mapped to the teacher's width, replace the
teacher's image tokens so that the teacher's language pathway produces reference logits for the
student's visual features (:func:`visual_switch_inputs`).
"""

from __future__ import annotations

import torch

from kdlib.losses.divergences import kl_tokens, reduce_tokens
from kdlib.losses.projector import WidthMap

Tensor = torch.Tensor


def _pairs(k: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Index pairs ``(i, j)``, ``i < j < k``, in row-major order: two ``[k(k-1)/2]`` tensors."""
    return torch.triu_indices(k, k, offset=1, device=device).unbind(0)


def kneedle_k(sorted_logits: Tensor, k_min: int = 2) -> Tensor:
    """Per-token knee of logits sorted in decreasing order: ``[..., K] -> [...]`` long, in ``[k_min, K]``.

    Values and ranks are scaled to ``[0, 1]``; the knee is the point farthest below the chord
    from the first to the last value, ``i* = argmax_i ((1 - r_i) - v_i)``, and ``k = i* + 1``
    keeps the head up to and including the knee (the reading of a public third-party DBiLD,
    ``docs/methods.md`` §5). A flat row (no knee) gives ``k_min``.
    """
    v = sorted_logits.float()
    big, small = v[..., :1], v[..., -1:]
    v_hat = (v - small) / (big - small).clamp_min(1e-12)
    r = torch.linspace(0.0, 1.0, v.shape[-1], device=v.device)
    k = ((1.0 - r) - v_hat).argmax(-1) + 1
    return k.clamp(min=k_min, max=v.shape[-1])


def _logit_difference_kl(student_logits: Tensor, teacher_logits: Tensor, selector: Tensor, k: int,
                         temperature: float, reverse: bool, dynamic: bool, k_min: int) -> Tensor:
    """Per-token KL between pairwise logit-difference distributions, ``[B, T, V] -> [B, T]``."""
    top = selector.detach().float().topk(k, dim=-1)
    zs = student_logits.float().gather(-1, top.indices) / temperature
    zt = teacher_logits.detach().float().gather(-1, top.indices) / temperature
    i, j = _pairs(k, zs.device)
    ds, dt = zs[..., i] - zs[..., j], zt[..., i] - zt[..., j]
    if dynamic:  # pairs reaching beyond the token's own k are left out of both softmaxes
        k_tok = kneedle_k(top.values, k_min)
        outside = j >= k_tok.unsqueeze(-1)
        ds, dt = ds.masked_fill(outside, float("-inf")), dt.masked_fill(outside, float("-inf"))
    log_s, log_t = ds.log_softmax(-1), dt.log_softmax(-1)
    return kl_tokens(log_s, log_t) if reverse else kl_tokens(log_t, log_s)


def _check(student_logits: Tensor, teacher_logits: Tensor, k: int, temperature: float) -> None:
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student {tuple(student_logits.shape)} and teacher {tuple(teacher_logits.shape)} "
                         f"logits differ (BiLD needs one vocabulary)")
    if not 2 <= k <= student_logits.shape[-1]:
        raise ValueError(f"k must be in [2, V={student_logits.shape[-1]}], got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def bild(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None, k: int = 8,
         temperature: float = 3.0, denom: float | Tensor | None = None) -> Tensor:
    """BiLD loss ``L_tLD + L_sLD`` (forward direction, BiLD defaults ``k = 8``, ``tau = 3``), float32."""
    _check(student_logits, teacher_logits, k, temperature)
    terms = [_logit_difference_kl(student_logits, teacher_logits, sel, k, temperature, False, False, 2)
             for sel in (teacher_logits, student_logits)]
    return sum(reduce_tokens(t, mask, denom) for t in terms)


def dbild(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None, k_max: int = 32,
          k_min: int = 4, temperature: float = 2.0, reverse: bool = True,
          denom: float | Tensor | None = None) -> Tensor:
    """DBiLD (our reading): BiLD with per-token ``k`` by :func:`kneedle_k` on the selector's top ``k_max``.

    ``k`` is chosen separately for the teacher-led and the student-led term; ``reverse=True``
    compares ``KL(softmax(d^S) || softmax(d^T))`` (Switch-KD README: reverse KL).
    """
    _check(student_logits, teacher_logits, k_max, temperature)
    if not 2 <= k_min <= k_max:
        raise ValueError(f"need 2 <= k_min <= k_max, got {k_min}, {k_max}")
    terms = [_logit_difference_kl(student_logits, teacher_logits, sel, k_max, temperature, reverse, True, k_min)
             for sel in (teacher_logits, student_logits)]
    return sum(reduce_tokens(t, mask, denom) for t in terms)


def visual_switch_inputs(teacher_text_embeds: Tensor, image_mask: Tensor, student_visual: Tensor,
                         width_map: WidthMap | None = None) -> Tensor:
    """``inputs_embeds [B, L, Dt]`` for the teacher LLM with the student's visual tokens switched in.

    ``teacher_text_embeds [B, L, Dt]``: the teacher's input embeddings of the prompt with ``N``
    placeholder positions per sample (their content is ignored), ``image_mask [B, L]`` marks
    them (in order), ``student_visual [B, N, Ds]``: the student projector outputs, mapped to
    ``Dt`` by ``width_map`` (a student -> teacher :class:`WidthMap`, required when ``Ds != Dt``).
    Gradient flows to ``student_visual`` and ``width_map``, so a loss on the teacher's output
    trains the student's visual pathway through the frozen teacher.
    """
    visual = student_visual if width_map is None else width_map(student_visual)
    b, n, d = visual.shape
    if d != teacher_text_embeds.shape[-1]:
        raise ValueError(f"student visual width {d} != teacher width {teacher_text_embeds.shape[-1]}: "
                         f"pass width_map=WidthMap({student_visual.shape[-1]}, {teacher_text_embeds.shape[-1]})")
    counts = image_mask.sum(1)
    if image_mask.shape != teacher_text_embeds.shape[:2] or (counts != n).any():
        raise ValueError(f"image_mask {tuple(image_mask.shape)} must mark exactly N = {n} positions per sample "
                         f"of the embeddings {tuple(teacher_text_embeds.shape)}; found {counts.tolist()}")
    return teacher_text_embeds.masked_scatter(image_mask.bool()[..., None], visual.to(teacher_text_embeds.dtype))
