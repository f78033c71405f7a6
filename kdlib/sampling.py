"""Teacher-mixed sampling for LLaVA-style models and plain causal LMs (MiniLLM, core paper Sec. 2.2.2).

At every decoding step both models see the same prefix, each with its own KV cache, and the
next token is drawn from the mixture in probability space

    p~(. | y<t, x) = (1 - alpha) q(. | y<t, x) + alpha p(. | y<t, x)

(``q`` student, ``p`` teacher; ``alpha = 0`` is pure student sampling, ``alpha = 1`` pure teacher).
MiniLLM does this inside a forked ``generate`` that refuses ``inputs_embeds``; LLaVA splices image
features into the embeddings, so kdlib runs its own token loop: the first step feeds the whole
prompt with ``pixel_values`` (image features computed once per model and sequence), later steps
feed only the new token, the cache and the extended attention mask. Positions follow
``generate``'s convention for left padding (``cumsum(mask) - 1``), so the log-probabilities returned
equal those of a fresh full forward on ``[prompt; response]`` with :func:`position_ids`.

Sampling uses one uniform number per sequence and step (inverse CDF), so a rollout depends only
on those numbers, not on how a batch is split across data-parallel ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from kdlib.models.features import CACHE_FIELD, image_inputs


@dataclass(frozen=True)
class Rollout:
    """Responses sampled for a batch of prompts, with the per-token log-probabilities of the rollout.

    All tensors are ``[B, T]`` (``T`` <= ``max_new_tokens``: the loop stops once every sequence ended).
    ``mask`` is 1 up to and including the first EOS; ``tokens`` are ``pad_token_id`` and the
    log-probabilities 0 after it (never NaN, even when the pad token is suppressed).
    """

    prompt_ids: Tensor  # [B, P] left-padded prompt
    prompt_mask: Tensor  # [B, P]
    tokens: Tensor  # [B, T] sampled response
    mask: Tensor  # [B, T] float, 1 on response tokens
    old_logprobs: Tensor  # [B, T] log q_old(y_t | y<t, x), the student at sampling time
    teacher_logprobs: Tensor  # [B, T] log p(y_t | y<t, x)
    mix_logprobs: Tensor  # [B, T] log p~(y_t | y<t, x), the distribution the token was drawn from

    @property
    def weights(self) -> Tensor:
        """Token-level importance weight ``w_t = q_old(y_t) / p~(y_t)`` (MiniLLM code form of Eq. 9), ``[B, T]``,
        0 after EOS; ``p~`` is the suppressed, renormalised mixture the token was drawn from."""
        return torch.exp(self.old_logprobs - self.mix_logprobs) * self.mask

    @property
    def input_ids(self) -> Tensor:
        """``[prompt; response]``, ``[B, P + T]``."""
        return torch.cat([self.prompt_ids, self.tokens], dim=1)

    @property
    def attention_mask(self) -> Tensor:
        """Prompt mask followed by the response mask, ``[B, P + T]``."""
        return torch.cat([self.prompt_mask, self.mask.to(self.prompt_mask.dtype)], dim=1)


def position_ids(attention_mask: Tensor) -> Tensor:
    """Positions of a left-padded batch as ``generate`` builds them: ``cumsum(mask) - 1``, 0 on padding."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.masked_fill(attention_mask == 0, 0)


def mixture_logprobs(student_logp: Tensor, teacher_logp: Tensor, alpha: float) -> Tensor:
    """``log p~ = log((1 - alpha) exp(log q) + alpha exp(log p))``, exact at ``alpha`` in {0, 1}; ``[B, V]``."""
    if alpha == 0.0:
        return student_logp
    if alpha == 1.0:
        return teacher_logp
    return torch.logaddexp(student_logp + math.log1p(-alpha), teacher_logp + math.log(alpha))


def suppress(logp: Tensor, token_ids: Tensor) -> Tensor:
    """Renormalise log-probabilities ``[B, V]`` with ``token_ids`` removed (probability 0)."""
    if token_ids.numel() == 0:
        return logp
    logp = logp.index_fill(-1, token_ids, float("-inf"))
    return logp - torch.logsumexp(logp, dim=-1, keepdim=True)


def draw_tokens(logp: Tensor, uniforms: Tensor | None) -> Tensor:
    """Next tokens ``[B]`` from log-probabilities ``[B, V]``: inverse CDF at ``uniforms`` ``[B]``, argmax when None.

    Token ``i`` is drawn when ``F(i - 1) <= u F(V) < F(i)`` (``F`` the running sum of the
    probabilities), so a token of probability 0 is never drawn, not even at ``u = 0``; rounding
    at ``u -> 1`` falls back on the last token of positive probability.
    """
    if uniforms is None:
        return logp.argmax(dim=-1)
    probs = logp.exp()
    cdf = probs.cumsum(dim=-1)
    u = (uniforms.to(cdf) * cdf[:, -1]).unsqueeze(-1)
    last = logp.shape[-1] - 1 - (probs > 0).flip(-1).int().argmax(dim=-1)
    return torch.minimum(torch.searchsorted(cdf, u, right=True).squeeze(-1), last)


def next_token_logits(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, positions: Tensor,
                      cache: Any = None, pixel_values: Tensor | None = None) -> tuple[Tensor, Any]:
    """One cached forward: feed ``input_ids`` ``[B, L]`` after ``cache`` (None: empty); ``attention_mask``
    ``[B, cached + L]``, ``positions`` ``[B, L]``. Returns the next token's logits ``[B, V]`` (fp32)
    and the grown cache."""
    out = model(input_ids=input_ids, **image_inputs(pixel_values), attention_mask=attention_mask,
                position_ids=positions, use_cache=True, logits_to_keep=1, **{CACHE_FIELD: cache})
    return out.logits[:, -1].float(), getattr(out, CACHE_FIELD)


class _Decoder:
    """One model's incremental decoding state: its KV cache and the log-probs of the next token."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.cache = None

    def step(self, input_ids: Tensor, attention_mask: Tensor, positions: Tensor,
             pixel_values: Tensor | None) -> Tensor:
        """Feed ``input_ids`` ``[B, L]`` (images on the first call); next-token log-probs ``[B, V]`` (fp32)."""
        logits, self.cache = next_token_logits(self.model, input_ids, attention_mask, positions, self.cache,
                                               pixel_values)
        return torch.log_softmax(logits, dim=-1)


def _as_list(ids: int | Sequence[int]) -> list[int]:
    return [ids] if isinstance(ids, int) else list(ids)


@torch.no_grad()
def mixed_sample(student: nn.Module, teacher: nn.Module, batch: dict[str, Tensor], max_new_tokens: int,
                 eos_token_id: int | Sequence[int], pad_token_id: int, alpha: float = 0.2,
                 do_sample: bool = True, generator: torch.Generator | None = None,
                 uniforms: Tensor | None = None, suppress_token_ids: Sequence[int] = ()) -> Rollout:
    """Sample responses from ``p~ = (1 - alpha) q + alpha p`` for a left-padded batch of prompts.

    ``batch``: ``input_ids`` and ``attention_mask`` ``[B, P]`` (left-padded, image placeholders
    included), ``pixel_values`` ``[B, C, H, W]`` (absent or None for text-only prompts). ``uniforms``
    ``[B, max_new_tokens]`` in [0, 1) fix the draws (one per sequence and step); when None they come from ``generator``.
    ``do_sample=False`` takes ``argmax p~`` (greedy). ``suppress_token_ids`` (e.g. the image
    placeholder, which would be read as an image slot in the next forward) are never drawn: ``p~``
    is renormalised without them, and ``mix_logprobs`` is that renormalised distribution, while
    ``old_logprobs`` / ``teacher_logprobs`` stay those of the full ``q`` and ``p``; importance
    weights must therefore use ``mix_logprobs`` (:func:`kdlib.losses.minillm.importance_weights`),
    not a mixture recomputed from ``q`` and ``p``. Runs under
    ``no_grad``; both models should be in eval mode.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be > 0, got {max_new_tokens}")
    prompt_ids, prompt_mask = batch["input_ids"], batch["attention_mask"]
    bsz, device = prompt_ids.shape[0], prompt_ids.device
    if do_sample and uniforms is None:
        uniforms = torch.rand(bsz, max_new_tokens, generator=generator, device=generator.device if generator else "cpu")
    if uniforms is not None and uniforms.shape != (bsz, max_new_tokens):
        raise ValueError(f"uniforms must be [{bsz}, {max_new_tokens}], got {list(uniforms.shape)}")
    eos = torch.tensor(_as_list(eos_token_id), device=device)
    banned = torch.tensor(list(suppress_token_ids), dtype=torch.long, device=device)
    decoders = (_Decoder(student), _Decoder(teacher))
    mask = prompt_mask.clone()
    positions = position_ids(mask)
    step_ids, pixels = prompt_ids, batch.get("pixel_values")
    done = torch.zeros(bsz, dtype=torch.bool, device=device)
    cols: list[tuple[Tensor, ...]] = []
    for t in range(max_new_tokens):
        logq, logp = (d.step(step_ids, mask, positions, pixels) for d in decoders)
        logmix = suppress(mixture_logprobs(logq, logp, alpha), banned)
        draw = uniforms[:, t].to(device) if do_sample else None
        token = draw_tokens(logmix, draw).masked_fill(done, pad_token_id)
        live = (~done).float()
        chosen = token.unsqueeze(-1)
        picked = (torch.where(done, 0.0, lp.gather(-1, chosen).squeeze(-1)) for lp in (logq, logp, logmix))
        cols.append((token, live, *picked))  # 0, not -inf * 0 = NaN, after EOS
        done = done | torch.isin(token, eos)
        if bool(done.all()):
            break
        step_ids, pixels = token.unsqueeze(-1), None
        positions = positions[:, -1:] + 1
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    tokens, live, logq, logp, logmix = (torch.stack(c, dim=1) for c in zip(*cols))
    return Rollout(prompt_ids, prompt_mask, tokens, live, logq, logp, logmix)
