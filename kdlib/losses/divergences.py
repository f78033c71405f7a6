"""Token-level divergences between a student and a teacher language model.

Conventions (every function of this module):

* ``student_logits`` and ``teacher_logits`` are ``[B, T, V]`` (any leading shape works), ``q`` is
  the student's next-token distribution and ``p`` the teacher's.
* ``mask`` is ``[B, T]`` with 1 (or True) for a counted token; ``None`` counts every token.
  Token losses are averaged over counted tokens by :func:`reduce_tokens`, which returns 0 (not
  NaN) when nothing is counted and accepts a global denominator for gradient accumulation
  (huggingface/trl#4719: divide by the number of valid tokens of the whole accumulation step).
* Everything is computed in float32 whatever the input dtype (fp16/bf16 softmaxes overflow,
  microsoft/LMOps#287).
* ``labels`` are aligned with the logits: ``labels[b, t]`` is the target of ``logits[b, t]``
  (for a causal LM pass ``logits[:, :-1]`` and ``labels[:, 1:]``); -100 marks an ignored token.
* Vocabulary entries where either model puts ``-inf`` (logits processors) are left out of the
  sums, as MiniLLM's and DistiLLM's ``inf_mask`` do; with finite logits nothing is left out.

Direction reminder: ``kl_tokens(log_a, log_b)`` is ``KL(A || B) = sum_v A_v (log A_v - log B_v)``.
Forward KL is ``KL(p || q)`` (mode-covering), reverse KL is ``KL(q || p)`` (mode-seeking).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
IGNORE_INDEX = -100


def log_probs(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``log softmax(logits / temperature)`` over the last axis, in float32."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return F.log_softmax(logits.float() / temperature, dim=-1)


def kl_tokens(log_a: Tensor, log_b: Tensor) -> Tensor:
    """``KL(A || B) = sum_v A_v (log A_v - log B_v)`` per token: ``[..., V] -> [...]``.

    Entries where ``log_a`` or ``log_b`` is ``-inf`` contribute 0 (and no NaN gradient).
    """
    diff = (log_a - log_b).masked_fill(torch.isinf(log_a) | torch.isinf(log_b), 0.0)
    return (log_a.exp() * diff).sum(-1)


def jsd_tokens(student_logp: Tensor, teacher_logp: Tensor, beta: float) -> Tensor:
    """Generalized Jensen-Shannon divergence per token (GKD convention, TRL ``generalized_jsd_loss``).

    ``beta = 0``: ``KL(p || q)`` (forward); ``beta = 1``: ``KL(q || p)`` (reverse); otherwise
    ``beta KL(p || M) + (1 - beta) KL(q || M)`` with ``M = beta p + (1 - beta) q``, ``log M``
    formed in log space (``logaddexp``). The end points are a convention, not limits: the
    mixture form tends to 0 as ``beta`` goes to 0 or 1 (``M`` becomes ``q`` or ``p``).
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if beta == 0.0:
        return kl_tokens(teacher_logp, student_logp)
    if beta == 1.0:
        return kl_tokens(student_logp, teacher_logp)
    log_m = torch.logaddexp(teacher_logp + math.log(beta), student_logp + math.log1p(-beta))
    return beta * kl_tokens(teacher_logp, log_m) + (1.0 - beta) * kl_tokens(student_logp, log_m)


def reduce_tokens(values: Tensor, mask: Tensor | None = None, denom: float | Tensor | None = None) -> Tensor:
    """``sum_t m_t v_t / D`` as a float32 scalar, with ``D = sum_t m_t`` unless ``denom`` is given.

    ``denom``: the number of counted tokens of the whole optimiser step (gradient accumulation,
    several ranks), so that every micro-batch is weighted by its token count. ``D = 0`` gives 0.
    Values at uncounted positions are ignored even when they are NaN or inf.
    """
    values = values.float()
    if mask is None:
        mask = torch.ones_like(values, dtype=torch.bool)
    if mask.shape != values.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match the token values {tuple(values.shape)}")
    keep = mask.bool()
    total = torch.where(keep, values, torch.zeros((), device=values.device)).sum()
    d = keep.sum() if denom is None else torch.as_tensor(denom, device=values.device)
    return total / d.float().clamp_min(1.0)


def _check_pair(student_logits: Tensor, teacher_logits: Tensor) -> None:
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ (vocabularies must match: slice or map them first)")


def forward_kl(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None,
               temperature: float = 1.0, denom: float | Tensor | None = None) -> Tensor:
    """Classic KD loss, core paper Eq. 1-2: ``T^2 KL(p_T || p_S)`` with both softmaxes at temperature ``T``.

    The ``T^2`` keeps gradient magnitudes comparable across temperatures (Hinton et al.).
    """
    _check_pair(student_logits, teacher_logits)
    kl = kl_tokens(log_probs(teacher_logits, temperature), log_probs(student_logits, temperature))
    return temperature**2 * reduce_tokens(kl, mask, denom)


def reverse_kl(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None,
               denom: float | Tensor | None = None) -> Tensor:
    """Token-level reverse KL, core paper Eq. 6 per step: ``mean_t KL(q_t || p_t)``, no temperature."""
    _check_pair(student_logits, teacher_logits)
    return reduce_tokens(kl_tokens(log_probs(student_logits), log_probs(teacher_logits)), mask, denom)


def generalized_jsd(student_logits: Tensor, teacher_logits: Tensor, beta: float, mask: Tensor | None = None,
                    denom: float | Tensor | None = None) -> Tensor:
    """Token mean of :func:`jsd_tokens` (GKD: 0 = forward KL, 1 = reverse KL, 0.5 = symmetric JSD)."""
    _check_pair(student_logits, teacher_logits)
    return reduce_tokens(jsd_tokens(log_probs(student_logits), log_probs(teacher_logits), beta), mask, denom)


def skew_kl(student_logits: Tensor, teacher_logits: Tensor, lam: float = 0.1, reverse: bool = False,
            mask: Tensor | None = None, denom: float | Tensor | None = None) -> Tensor:
    """DistiLLM's skew KL (jongwooko/distillm ``distillm/losses.py``), token mean.

    * SKL (``reverse=False``): ``KL(p || lam p + (1 - lam) q)``;
    * SRKL (``reverse=True``): ``KL(q || (1 - lam) p + lam q)``.

    DistiLLM writes SKL as ``-sum p log(mix)`` (teacher entropy dropped); this is the full KL,
    which differs by a constant in the student and has the same gradient. ``lam = 0`` gives
    forward / reverse KL.
    """
    if not 0.0 <= lam < 1.0:
        raise ValueError(f"lam must be in [0, 1), got {lam}")
    _check_pair(student_logits, teacher_logits)
    log_q, log_p = log_probs(student_logits), log_probs(teacher_logits)
    first, second = (log_q, log_p) if reverse else (log_p, log_q)
    # mixture = lam * first + (1 - lam) * second; lam = 0 is the plain KL(first || second)
    log_mix = second if lam == 0.0 else torch.logaddexp(first + math.log(lam), second + math.log1p(-lam))
    return reduce_tokens(kl_tokens(first, log_mix), mask, denom)


def token_logprobs(logits: Tensor, tokens: Tensor) -> Tensor:
    """``log q(tokens[b, t])`` under ``softmax(logits[b, t])``: ``[B, T, V], [B, T] -> [B, T]`` float32.

    Ignored ids (negative, e.g. -100) give 0; mask them out downstream.
    """
    if logits.shape[:-1] != tokens.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and tokens {tuple(tokens.shape)} do not line up")
    z = logits.float()
    idx = tokens.clamp_min(0).unsqueeze(-1)
    lp = z.gather(-1, idx).squeeze(-1) - torch.logsumexp(z, dim=-1)
    return torch.where(tokens < 0, torch.zeros((), device=lp.device), lp)


def cross_entropy(logits: Tensor, labels: Tensor, denom: float | Tensor | None = None) -> Tensor:
    """Token-mean cross-entropy ``-mean_t log q(labels_t)`` over ``labels != -100`` (float32)."""
    return reduce_tokens(-token_logprobs(logits, labels), labels != IGNORE_INDEX, denom)


def kd_objective(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, alpha: float,
                 temperature: float, denom: float | Tensor | None = None) -> Tensor:
    """Core paper Eq. 3: ``L = alpha L_KD + (1 - alpha) L_CE``.

    ``L_KD`` is :func:`forward_kl` at ``temperature`` (Eq. 2, with its ``T^2``) and ``L_CE`` the
    cross-entropy with the labels at temperature 1; both are averaged over the tokens whose label
    is not -100. Convention: ``alpha`` weighs the distillation term (``alpha = 1``: pure KD,
    ``alpha = 0``: plain fine-tuning), as the paper writes it.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    mask = labels != IGNORE_INDEX
    kd = forward_kl(student_logits, teacher_logits, mask, temperature, denom)
    return alpha * kd + (1.0 - alpha) * cross_entropy(student_logits, labels, denom)
