"""MiniLLM's reverse-KL policy gradient (core paper Eq. 6-10, Table 1), term by term.

The gradient of the sequence-level reverse KL ``L = KL(q_theta || p)`` (Eq. 6) is split into

* a **single-step** term (Eq. 8, left): the reverse KL of each step taken exactly over the
  vocabulary, ``mean_t KL(q_t || p_t)`` (:func:`single_step_loss`);
* a **long-term** term (Eq. 8, right, normalised): a PPO-clipped policy gradient on the future
  rewards ``r_t = log p(y_t) - log q(y_t)`` (:func:`token_rewards`, :func:`returns`,
  :func:`importance_weights`, :func:`pg_loss`);
* the **language-modelling** term on the pre-training corpus (Eq. 7, :func:`lm_loss`).

Three forms are implemented, chosen by :class:`MiniLLMConfig` ``form``:

``"code"`` (default) -- microsoft/LMOps ``minillm/`` as shipped (``docs/methods.md`` §1.2-1.3):
rewards ``clip((log p - log q_old) / 0.5, -100, 100)``; return ``G_t = sum_{t' >= t} gamma^(t'-t) r_t'``
(current step included, ``gamma = 0.95``) divided by the number of remaining tokens ``T - t + 1``
and whitened; single-token importance weight ``w_t = q_old(y_t) / p~(y_t)`` against the
teacher-mixed sampler ``p~ = (1 - a) q + a p``, ``a = 0.2``, inside the PPO-clipped ratio. Its
expected update is *not* the gradient of Eq. 6: the current step is counted in the returns and
again by the single-step term, and discounting, reward scale, length normalisation, whitening,
per-token weights and the clip each move it further (measured exactly in
:mod:`kdlib.chapters.exact_gradient`).

``"paper"`` -- the core paper's Eq. 8-9: ``R_{t+1} = sum_{t' > t} log(p / q)`` (current step
excluded, undiscounted, unscaled) divided by the number of remaining terms ``T - t``, not
whitened; ``w_t = prod_{k <= t} q_old(y_k) / p~(y_k)``, the running product of Eq. 9 taken against
the distribution the tokens were drawn from (``p~``; 1 at ``a = 0``), on both terms.

``"unbiased"`` -- the estimator whose expected update *is* ``grad KL(q_theta || p)`` under
teacher-mixed sampling (proved by enumeration in the exact-gradient harness): returns
``R_{t+1}`` as in the paper form but not length-normalised, and one **sequence-level** weight
``W(y) = prod_k q_old(y_k) / p~(y_k)`` on both the single-step and the long-term term, outside
the PPO clip (the clip acts on ``q_theta / q_old`` only, so at the rollout's parameters it never
trims a weight). Since ``p~ >= (1 - a) q``, every factor is at most ``1 / (1 - a)``: ``W`` is
bounded by ``(1 - a)^-T`` and never overflows the way ``q / p`` products can. The gradient is a
sum over the response (per-sequence); the loop's token mean divides it by the mean response
length, the same positive constant for every parameter.

Departures from LMOps kept on purpose: whitening uses the counted tokens only (LMOps includes
padded zeros, which makes advantages depend on padding, cf. huggingface/trl#7024); discounting
is a reverse recurrence (no absolute ``gamma^t``, which under/overflows for long responses,
trl#6626); every return is detached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from kdlib.losses.divergences import (IGNORE_INDEX, kl_tokens, log_probs, reduce_tokens, reverse_kl,
                                     token_logprobs)

Tensor = torch.Tensor
Form = Literal["code", "paper", "unbiased"]
Importance = Literal["token", "prefix", "sequence"]

#: values of the switches left at ``None``, per form
FORM_DEFAULTS: dict[str, dict[str, float | bool | str]] = {
    "code": {"gamma": 0.95, "whiten": True, "include_current_reward": True, "reward_scale": 0.5,
             "length_norm": True, "importance": "token", "clip_weights": True},
    "paper": {"gamma": 1.0, "whiten": False, "include_current_reward": False, "reward_scale": 1.0,
              "length_norm": True, "importance": "prefix", "clip_weights": True},
    "unbiased": {"gamma": 1.0, "whiten": False, "include_current_reward": False, "reward_scale": 1.0,
                 "length_norm": False, "importance": "sequence", "clip_weights": False},
}
IMPORTANCE = ("token", "prefix", "sequence")


@dataclass(frozen=True)
class MiniLLMConfig:
    """Switches of the MiniLLM objective (defaults = the LMOps scripts, ``docs/methods.md`` §1.8).

    ``gamma``, ``whiten``, ``include_current_reward``, ``reward_scale``, ``length_norm``,
    ``importance`` and ``clip_weights`` left at ``None`` take the value of ``form``
    (:data:`FORM_DEFAULTS`); set them to override one switch.
    ``length_norm`` divides returns by the number of tokens they sum.
    ``importance``: ``token`` (``w_t = q_old(y_t) / p~(y_t)``, long-term term only, LMOps),
    ``prefix`` (``prod_{k <= t}``, both terms, Eq. 9) or ``sequence`` (``prod`` over the whole
    response, both terms; unbiased). ``clip_weights``: the weight sits inside the PPO-clipped ratio
    (LMOps) rather than multiplying it.
    ``mix_alpha`` is the teacher share of the sampler (0 = pure student, ``w_t = 1``).
    ``pt_kd_ratio`` is the forward-KD share of the LM term (0 = Eq. 7; LMOps scripts: 0.5).
    Which terms a run optimises is :attr:`kdlib.train.config.TrainConfig.ablate`.
    """

    form: Form = "code"
    gamma: float | None = None
    length_norm: bool | None = None
    whiten: bool | None = None
    include_current_reward: bool | None = None
    reward_scale: float | None = None
    importance: Importance | None = None
    clip_weights: bool | None = None
    reward_clip: float = 100.0
    clip_ratio: float = 0.2
    mix_alpha: float = 0.2
    pt_kd_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.form not in FORM_DEFAULTS:
            raise ValueError(f"MiniLLMConfig.form must be one of {sorted(FORM_DEFAULTS)}, got {self.form!r}")
        for name, value in FORM_DEFAULTS[self.form].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        checks = {
            "gamma": 0.0 <= self.gamma <= 1.0,
            "reward_scale": self.reward_scale > 0.0,
            "reward_clip": self.reward_clip > 0.0,
            "clip_ratio": 0.0 < self.clip_ratio < 1.0,
            "mix_alpha": 0.0 <= self.mix_alpha < 1.0,
            "pt_kd_ratio": 0.0 <= self.pt_kd_ratio <= 1.0,
            "importance": self.importance in IMPORTANCE,
        }
        bad = [f"{k}={getattr(self, k)!r}" for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"MiniLLMConfig: out of range: {', '.join(bad)} (see the field docs)")


def token_rewards(teacher_logprobs: Tensor, old_logprobs: Tensor, mask: Tensor, cfg: MiniLLMConfig) -> Tensor:
    """Per-token reward ``r_t = clip((log p(y_t) - log q_old(y_t)) / scale, -c, c)``, 0 where not counted.

    ``[B, T]`` log-probs of the sampled tokens (teacher, student at sampling time) -> ``[B, T]``
    float32, detached (LMOps ``sampler.py`` L122-131; Eq. 9's ``log p / q`` with scale 1).
    """
    r = (teacher_logprobs.float() - old_logprobs.float()) / cfg.reward_scale
    r = r.clamp(-cfg.reward_clip, cfg.reward_clip)
    return torch.where(mask.bool(), r, torch.zeros((), device=r.device)).detach()


def importance_weights(old_logprobs: Tensor, mix_logprobs: Tensor, mask: Tensor, cfg: MiniLLMConfig) -> Tensor:
    """Importance weight of each sampled token, ``[B, T]`` float32, detached, 1 where not counted.

    ``old_logprobs`` ``log q_old(y_t)`` of the student at sampling time and ``mix_logprobs``
    ``log p~(y_t)`` of the distribution the token was actually drawn from
    (:attr:`kdlib.sampling.Rollout.mix_logprobs`: the teacher mixture, renormalised without the
    suppressed tokens), so every weight is 1 at ``a = 0`` without suppression. With
    ``l_k = log q_old(y_k) - log p~(y_k)`` over counted tokens:

    * ``token`` (LMOps ``sampler.py`` L108-115): ``w_t = exp(l_t)``;
    * ``prefix`` (Eq. 9): ``w_t = exp(sum_{k <= t} l_k)``;
    * ``sequence`` (unbiased): ``w_t = W(y) = exp(sum_k l_k)`` for every token of the response.

    For ``a > 0`` each ``l_k <= -log(1 - a)`` (``p~ >= (1 - a) q``, up to the suppressed mass), so
    the products stay bounded.
    """
    m = mask.bool()
    one = torch.ones((), device=old_logprobs.device)
    log_w = torch.where(m, old_logprobs.float() - mix_logprobs.float(), torch.zeros((), device=one.device))
    if cfg.importance == "prefix":
        log_w = log_w.cumsum(-1)
    elif cfg.importance == "sequence":
        log_w = log_w.sum(-1, keepdim=True).expand_as(log_w)
    return torch.where(m, log_w.exp(), one).detach()


def single_step_weights(weights: Tensor, cfg: MiniLLMConfig) -> Tensor:
    """Weights of the single-step term: 1 for ``token`` (LMOps does not weight it), else ``weights``."""
    return torch.ones_like(weights) if cfg.importance == "token" else weights


def _discounted_sums(rewards: Tensor, mask: Tensor, gamma: float) -> tuple[Tensor, Tensor]:
    """Reverse recurrence over counted tokens: ``(G_incl, G_excl)`` both ``[B, T]``.

    ``G_incl[t] = r_t + gamma G_excl[t]`` and ``G_excl[t]`` = the discounted sum of the counted
    rewards after ``t``. Uncounted positions pass the running sum through unchanged, so padding
    anywhere (right or left) changes nothing and no absolute power of ``gamma`` is ever formed.
    """
    incl, excl = torch.zeros_like(rewards), torch.zeros_like(rewards)
    acc = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        excl[:, t] = acc
        acc = torch.where(mask[:, t], rewards[:, t] + gamma * acc, acc)
        incl[:, t] = acc
    return incl, excl


def _whiten(x: Tensor, mask: Tensor, population: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """``(x - mean) / sqrt(var + eps)`` with mean and (population) variance over counted tokens.

    ``population`` ``[B]`` weighs each sequence (its probability): the statistics of an infinite batch.
    """
    w = mask.float() if population is None else mask.float() * population.float().unsqueeze(-1)
    n = w.sum().clamp_min(torch.finfo(w.dtype).tiny if population is not None else 1.0)
    mean = (w * x).sum() / n
    var = (w * (x - mean) ** 2).sum() / n
    return (x - mean) * torch.rsqrt(var + eps)


def returns(rewards: Tensor, mask: Tensor, cfg: MiniLLMConfig, population: Tensor | None = None) -> Tensor:
    """Advantages of the long-term term, ``[B, T]`` float32, detached, 0 where not counted.

    code form: ``A_t = whiten( sum_{t' >= t} gamma^(t'-t) r_t' / (T - t + 1) )`` (LMOps
    ``losses.py`` L27-56); paper form: ``A_t = R_{t+1} / (T - t)`` with
    ``R_{t+1} = sum_{t' > t} r_t'`` (Eq. 8-9, the last token gets 0). In general the divisor is
    the number of counted tokens the sum runs over (``length_norm``; at least 1), ``T`` counts
    only counted tokens, and ``whiten`` standardises over counted tokens (weighted by
    ``population`` ``[B]``, each sequence's probability, when given: the exact harness).
    """
    m = mask.bool()
    incl, excl = _discounted_sums(rewards.float() * m, m, cfg.gamma)
    total = incl if cfg.include_current_reward else excl
    if cfg.length_norm:
        remaining = m.flip(-1).cumsum(-1).flip(-1)  # counted tokens from t to the end
        terms = remaining if cfg.include_current_reward else remaining - 1
        total = total / terms.clamp_min(1)
    if cfg.whiten:
        total = _whiten(total, m, population)
    return torch.where(m, total, 0.0).detach()


def pg_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, weights: Tensor, mask: Tensor,
            cfg: MiniLLMConfig, denom: float | Tensor | None = None) -> Tensor:
    """PPO-clipped policy-gradient loss (LMOps ``losses.py`` ``_pg_loss`` L58-96), token mean.

    ``rho_t = exp(log q_theta(y_t) - log q_old(y_t))``, ``eps = cfg.clip_ratio``:

    * ``clip_weights`` (LMOps): ``rho'_t = rho_t w_t`` and
      ``L = mean_t max(-A_t rho'_t, -A_t clip(rho'_t, 1 - eps, 1 + eps))``: the clip also trims the
      importance weights, so even at ``q_theta = q_old`` tokens with ``w_t`` outside ``[1 - eps, 1 + eps]``
      give no gradient;
    * otherwise ``L = mean_t w_t max(-A_t rho_t, -A_t clip(rho_t, 1 - eps, 1 + eps))``: the clip
      acts on the policy change only.

    Unclipped, the gradient at ``q_theta = q_old`` is ``-mean_t A_t w_t grad log q(y_t)``: Eq. 8's
    ``(grad L)_Long``. All inputs ``[B, T]``; only ``logprobs`` carries gradient.
    """
    ratio = torch.exp(logprobs.float() - old_logprobs.float().detach())
    w, adv = weights.detach().float(), advantages.detach()
    if cfg.clip_weights:
        ratio, w = ratio * w, torch.ones_like(w)
    clipped = ratio.clamp(1.0 - cfg.clip_ratio, 1.0 + cfg.clip_ratio)
    return reduce_tokens(w * torch.maximum(-adv * ratio, -adv * clipped), mask, denom)


def clip_fraction(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, weights: Tensor, mask: Tensor,
                  cfg: MiniLLMConfig) -> Tensor:
    """Number of counted tokens whose PPO term is clipped (no gradient), a float ``[]``, detached.

    Same arguments as :func:`pg_loss`; divide by the token count for the fraction.
    """
    ratio = torch.exp(logprobs.detach().float() - old_logprobs.float())
    if cfg.clip_weights:
        ratio = ratio * weights.float()
    adv = advantages.float()
    clipped = ((adv > 0) & (ratio > 1.0 + cfg.clip_ratio)) | ((adv < 0) & (ratio < 1.0 - cfg.clip_ratio))
    return (clipped & mask.bool()).sum().float()


def single_step_loss(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor,
                     denom: float | Tensor | None = None, weights: Tensor | None = None) -> Tensor:
    """Eq. 8's ``(grad L)_Single`` as a loss: ``mean_t w_t KL(q_theta(.|y<t) || p(.|y<t))``, exact over ``V``.

    Since ``E_{y_t ~ q}[r_t] = -KL(q_t || p_t)``, the gradient of this loss is
    ``-grad sum_t E_{y_t ~ q}[r_t]`` with the expectation taken exactly instead of by sampling.
    ``weights`` ``[B, T]`` (:func:`single_step_weights`; None = 1, as LMOps ``losses.py``
    ``_reg_loss``, although Eq. 8 writes ``w_t`` inside). The teacher is detached.
    """
    if weights is None:
        return reverse_kl(student_logits, teacher_logits.detach(), mask, denom)
    kl = kl_tokens(log_probs(student_logits), log_probs(teacher_logits.detach()))
    return reduce_tokens(weights.detach().float() * kl, mask, denom)


def lm_loss(logits: Tensor, labels: Tensor, teacher_logits: Tensor | None = None, kd_ratio: float = 0.0,
            denom: float | Tensor | None = None) -> Tensor:
    """Language-modelling term on ``D_PT`` (Eq. 7), optionally mixed with forward KD (LMOps ``pt_loss``).

    ``L_pt = mean_t [(1 - k) (-log q(y_t)) + k (-sum_v p(v) log q(v))]`` over ``labels != -100``,
    ``k = kd_ratio``. The KD part is the soft cross-entropy of LMOps, i.e. ``KL(p || q)`` plus
    the teacher entropy (same gradient). ``labels`` are aligned with ``logits``.
    """
    if not 0.0 <= kd_ratio <= 1.0:
        raise ValueError(f"kd_ratio must be in [0, 1], got {kd_ratio}")
    per_token = -token_logprobs(logits, labels)
    if kd_ratio > 0.0:
        if teacher_logits is None:
            raise ValueError("lm_loss: kd_ratio > 0 needs teacher_logits")
        p = log_probs(teacher_logits.detach()).exp()
        soft_ce = -(p * log_probs(logits)).sum(-1)
        per_token = (1.0 - kd_ratio) * per_token + kd_ratio * soft_ce
    return reduce_tokens(per_token, labels != IGNORE_INDEX, denom)
