"""Teacher-mixed sampling: agreement with ``generate``, with a fresh forward, and with multinomial sampling."""

from __future__ import annotations

import math

import pytest
import torch

from kdlib.models.build import build_random_pair
from kdlib.models.tokenizer import build_tokenizer
from kdlib.models.vocab import image_token_id
from kdlib.profiles import get_profile
from kdlib.sampling import draw_tokens, mixed_sample, mixture_logprobs, position_ids, suppress

PROFILE = get_profile("tiny", {"vision.image_size": 32})  # 16 image tokens keep the models fast
MAX_NEW = 6


@pytest.fixture(scope="module")
def pair():
    tokenizer = build_tokenizer(["a field of green crops next to a river and two roads"] * 4, 300)
    built = build_random_pair(PROFILE, tokenizer, seed=0)
    return built.student.eval(), built.teacher.eval(), tokenizer


def left_padded_batch(tokenizer, lengths=(7, 4, 2), seed=0) -> dict[str, torch.Tensor]:
    """Prompts of image tokens then ``length`` random text ids, left-padded; random pixels."""
    gen = torch.Generator().manual_seed(seed)
    n_img = PROFILE.vision.num_image_tokens
    width = n_img + max(lengths)
    ids = torch.full((len(lengths), width), tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        text = torch.randint(10, len(tokenizer), (n,), generator=gen)
        ids[row, width - n - n_img:] = torch.cat([torch.full((n_img,), image_token_id(tokenizer)), text])
        mask[row, width - n - n_img:] = 1
    pixels = torch.randn(len(lengths), 3, PROFILE.vision.image_size, PROFILE.vision.image_size, generator=gen)
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels}


def greedy_reference(model, batch, eos: int, pad: int) -> torch.Tensor:
    out = model.generate(**batch, max_new_tokens=MAX_NEW, do_sample=False, eos_token_id=eos, pad_token_id=pad)
    return out[:, batch["input_ids"].shape[1]:]


@pytest.mark.parametrize("alpha,reference", [(0.0, "student"), (1.0, "teacher")])
def test_greedy_equals_generate(pair, alpha, reference):
    student, teacher, tok = pair
    batch = left_padded_batch(tok)
    model = student if reference == "student" else teacher
    # an EOS that the greedy path emits mid-way in row 0, so rows end at different steps
    eos = int(greedy_reference(model, batch, -1, tok.pad_token_id)[0, 2])
    expected = greedy_reference(model, batch, eos, tok.pad_token_id)
    rollout = mixed_sample(student, teacher, batch, MAX_NEW, eos, tok.pad_token_id, alpha=alpha, do_sample=False)
    assert torch.equal(rollout.tokens, expected)
    ended = (rollout.tokens == eos).float().cumsum(1)
    assert torch.equal(rollout.mask, ((ended - (rollout.tokens == eos).float()) == 0).float())


def test_logprobs_match_a_fresh_forward(pair):
    student, teacher, tok = pair
    batch = left_padded_batch(tok, seed=1)
    rollout = mixed_sample(student, teacher, batch, MAX_NEW, tok.eos_token_id, tok.pad_token_id, alpha=0.3,
                           generator=torch.Generator().manual_seed(0))
    ids, mask, plen = rollout.input_ids, rollout.attention_mask, rollout.prompt_ids.shape[1]
    fresh = []
    with torch.no_grad():
        for model in (student, teacher):
            logits = model(input_ids=ids, attention_mask=mask, pixel_values=batch["pixel_values"],
                           position_ids=position_ids(mask)).logits[:, plen - 1:-1]
            fresh.append(logits.float().log_softmax(-1).gather(-1, rollout.tokens[..., None]).squeeze(-1))
    m = rollout.mask
    torch.testing.assert_close(rollout.old_logprobs, fresh[0] * m, atol=1e-5, rtol=0)
    torch.testing.assert_close(rollout.teacher_logprobs, fresh[1] * m, atol=1e-5, rtol=0)
    direct = torch.log(0.7 * fresh[0].exp() + 0.3 * fresh[1].exp()) * m
    torch.testing.assert_close(rollout.mix_logprobs, direct, atol=1e-5, rtol=0)
    torch.testing.assert_close(rollout.weights, (fresh[0] - direct).exp() * m, atol=1e-5, rtol=0)


def test_rollout_does_not_depend_on_how_the_batch_is_split(pair):
    student, teacher, tok = pair
    batch = left_padded_batch(tok, lengths=(5, 3, 6, 2), seed=2)
    noise = torch.rand(4, MAX_NEW, generator=torch.Generator().manual_seed(3))
    whole = mixed_sample(student, teacher, batch, MAX_NEW, tok.eos_token_id, tok.pad_token_id, uniforms=noise)
    for rows in (slice(0, 2), slice(2, 4)):
        part = mixed_sample(student, teacher, {k: v[rows] for k, v in batch.items()}, MAX_NEW,
                            tok.eos_token_id, tok.pad_token_id, uniforms=noise[rows])
        t = part.tokens.shape[1]
        assert torch.equal(part.tokens, whole.tokens[rows, :t])
        torch.testing.assert_close(part.old_logprobs, whole.old_logprobs[rows, :t], atol=1e-5, rtol=0)


def test_inverse_cdf_draws_follow_the_distribution():
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(1, 6, generator=gen) * 2, -1)
    n = 40_000
    draws = draw_tokens(probs.log().expand(n, -1), torch.rand(n, generator=gen))
    reference = torch.multinomial(probs.expand(n, -1), 1, generator=gen).squeeze(1)
    freq, ref = (torch.bincount(d, minlength=6).float() / n for d in (draws, reference))
    sigma = (probs[0] * (1 - probs[0]) / n).sqrt()
    assert ((freq - probs[0]).abs() < 5 * sigma + 1e-4).all()
    assert ((ref - probs[0]).abs() < 5 * sigma + 1e-4).all()


def test_mixture_is_exact_at_the_ends():
    gen = torch.Generator().manual_seed(0)
    q, p = (torch.randn(3, 7, generator=gen).log_softmax(-1) for _ in range(2))
    assert torch.equal(mixture_logprobs(q, p, 0.0), q)
    assert torch.equal(mixture_logprobs(q, p, 1.0), p)
    torch.testing.assert_close(mixture_logprobs(q, p, 0.25), torch.log(0.75 * q.exp() + 0.25 * p.exp()))


def test_bad_arguments_are_refused(pair):
    student, teacher, tok = pair
    batch = left_padded_batch(tok)
    with pytest.raises(ValueError, match="alpha"):
        mixed_sample(student, teacher, batch, 2, tok.eos_token_id, tok.pad_token_id, alpha=1.5)
    with pytest.raises(ValueError, match="uniforms"):
        mixed_sample(student, teacher, batch, 2, tok.eos_token_id, tok.pad_token_id, uniforms=torch.rand(1, 2))


def test_suppressed_tokens_are_never_drawn(pair):
    student, teacher, tok = pair
    batch = left_padded_batch(tok, seed=4)
    greedy = mixed_sample(student, teacher, batch, MAX_NEW, -1, tok.pad_token_id, alpha=0.5, do_sample=False)
    banned = sorted(set(greedy.tokens[:, 0].tolist()))  # the first greedy choices
    out = mixed_sample(student, teacher, batch, MAX_NEW, -1, tok.pad_token_id, alpha=0.5, do_sample=False,
                       suppress_token_ids=banned)
    assert not torch.isin(out.tokens, torch.tensor(banned)).any()
    # the full distributions' log-probs are kept; the mixture is renormalised over the allowed tokens
    full = torch.logaddexp(out.old_logprobs + math.log(0.5), out.teacher_logprobs + math.log(0.5))
    assert (out.mix_logprobs >= full - 1e-6).all() and (out.mix_logprobs[:, 0] > full[:, 0]).all()


def test_a_suppressed_token_is_never_drawn_even_at_the_ends_of_the_unit_interval():
    logp = suppress(torch.randn(1, 5).log_softmax(-1), torch.tensor([0, 1]))
    u = torch.tensor([0.0, 1e-12, 0.5, 1.0 - 1e-7])
    assert not torch.isin(draw_tokens(logp.expand(4, -1), u), torch.tensor([0, 1])).any()
    last = suppress(torch.randn(1, 5).log_softmax(-1), torch.tensor([3, 4]))
    assert (draw_tokens(last.expand(2, -1), torch.tensor([1.0 - 1e-9, 1.0])) == 2).all()


def test_rollout_after_eos_is_finite_when_pad_is_suppressed(pair):
    student, teacher, tok = pair
    batch = left_padded_batch(tok, seed=2)
    greedy = mixed_sample(student, teacher, batch, MAX_NEW, -1, tok.pad_token_id, alpha=0.5, do_sample=False)
    eos = int(greedy.tokens[0, 1])  # row 0 ends at step 2; the others may run on
    out = mixed_sample(student, teacher, batch, MAX_NEW, eos, tok.pad_token_id, alpha=0.5, do_sample=False,
                       suppress_token_ids=[tok.pad_token_id])
    assert out.mask[0, 2:].sum() == 0 and out.tokens.shape[1] > 2
    for values in (out.old_logprobs, out.teacher_logprobs, out.mix_logprobs, out.weights):
        assert torch.isfinite(values).all()
    assert (out.mix_logprobs[0, 2:] == 0).all() and (out.weights[0, 2:] == 0).all()
