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


#: Readings of the Kneedle sign: ``"knee"`` (default) and ``"dbild_code"``
KNEEDLE_READINGS = ("knee", "dbild_code")


def kneedle_k(sorted_logits: Tensor, k_min: int = 2, reading: str = "knee") -> Tensor:
    """Per-token knee of logits sorted in decreasing order: ``[..., K] -> [...]`` long, in ``[k_min, K]``.

    Values and ranks are scaled to ``[0, 1]`` (``v_i``, ``r_i``); the chord runs from ``(0, 1)`` to
    ``(1, 0)``, i.e. ``1 - r_i``. Two readings of the sign, ``k = i* + 1`` in both:

    * ``"knee"`` (default): ``i* = argmax_i ((1 - r_i) - v_i)``, the point farthest *below* the
      chord, which is Kneedle's knee of a convex decreasing curve (Satopaa et al., 2011, "Finding a
      'Kneedle' in a Haystack"). On a Gaussian logit cloud (top 256 of 32,000) the mean ``k`` is 47.
    * ``"dbild_code"``: ``i* = argmax_i (v_i - (1 - r_i))``, the sign of the public third-party
      DBiLD implementation (``docs/methods.md`` §5): the point farthest *above* the chord, which on
      a convex curve is a noise excursion among the first ranks (on the same cloud ``k = 1`` for
      about 95 % of tokens, mean ``k`` about 5; ``k_min`` then decides).

    The default is the geometric knee because the sorted top logits of a language model are convex
    and decreasing, where only the below-chord reading finds a bend; the code's sign is kept as a
    switch because it is what the released DBiLD trains with. A flat row gives ``k_min``.
    """
    if reading not in KNEEDLE_READINGS:
        raise ValueError(f"kneedle reading must be one of {KNEEDLE_READINGS}, got {reading!r}")
    v = sorted_logits.float()
    big, small = v[..., :1], v[..., -1:]
    v_hat = (v - small) / (big - small).clamp_min(1e-12)
    chord = 1.0 - torch.linspace(0.0, 1.0, v.shape[-1], device=v.device)
    gap = chord - v_hat if reading == "knee" else v_hat - chord
    k = (gap.argmax(-1) + 1).masked_fill((big - small).squeeze(-1) <= 1e-12, k_min)
    return k.clamp(min=k_min, max=v.shape[-1])


def _logit_difference_kl(student_logits: Tensor, teacher_logits: Tensor, selector: Tensor, k: int,
                         temperature: float, reverse: bool, dynamic: bool, k_min: int,
                         kneedle: str = "knee") -> Tensor:
    """Per-token KL between pairwise logit-difference distributions, ``[B, T, V] -> [B, T]``."""
    top = selector.detach().float().topk(k, dim=-1)
    zs = student_logits.float().gather(-1, top.indices) / temperature
    zt = teacher_logits.detach().float().gather(-1, top.indices) / temperature
    i, j = _pairs(k, zs.device)
    ds, dt = zs[..., i] - zs[..., j], zt[..., i] - zt[..., j]
    if dynamic:  # pairs reaching beyond the token's own k are left out of both softmaxes
        k_tok = kneedle_k(top.values, k_min, kneedle)
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
          denom: float | Tensor | None = None, kneedle: str = "knee") -> Tensor:
    """DBiLD (our reading): BiLD with per-token ``k`` by :func:`kneedle_k` on the selector's top ``k_max``.

    ``k`` is chosen separately for the teacher-led and the student-led term; ``reverse=True``
    compares ``KL(softmax(d^S) || softmax(d^T))`` (Switch-KD README: reverse KL); ``kneedle`` picks
    the sign reading of :func:`kneedle_k`. Normalisation as the source: per token a KL (a sum over
    the pairs of one distribution), averaged over counted tokens (``mask [B, T]`` or ``denom``).
    """
    _check(student_logits, teacher_logits, k_max, temperature)
    if not 2 <= k_min <= k_max:
        raise ValueError(f"need 2 <= k_min <= k_max, got {k_min}, {k_max}")
    terms = [_logit_difference_kl(student_logits, teacher_logits, sel, k_max, temperature, reverse, True, k_min,
                                  kneedle)
             for sel in (teacher_logits, student_logits)]
    return sum(reduce_tokens(t, mask, denom) for t in terms)


#: Readings of the visual switch: ``"switched_to_teacher"`` (default) and ``"student_to_switched"``
SWITCH_DIRECTIONS = ("switched_to_teacher", "student_to_switched")


def switch_pair(student_logits: Tensor, teacher_logits: Tensor, switched_logits: Tensor,
                direction: str = "switched_to_teacher") -> tuple[Tensor, Tensor]:
    """``(trained, reference)`` logits ``[R, V]`` of the visual-switch DBiLD term, by ``direction``.

    * ``"switched_to_teacher"`` (default): the teacher run on the student's visual tokens is
      pulled towards the plain teacher, ``DBiLD(p_switch, p)``; gradient reaches the student's
      projector (and the width map) through the frozen teacher, so the student's visual features
      learn to drive the teacher as the teacher's own do. Default because it is the only reading
      in which the switch term trains the visual pathway by a route the logit term lacks.
    * ``"student_to_switched"``: the switched logits are a detached reference for the student,
      ``DBiLD(q, p_switch)``, the use the public third-party Switch-KD code makes of them
      (``docs/methods.md`` §5); the projector then learns only through the student's own forward.
    """
    if direction not in SWITCH_DIRECTIONS:
        raise ValueError(f"switch direction must be one of {SWITCH_DIRECTIONS}, got {direction!r}")
    if direction == "switched_to_teacher":
        return switched_logits, teacher_logits.detach()
    return student_logits, switched_logits.detach()


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
