"""Chunked divergences equal the plain ones in value and gradient (student hidden, weight, bias)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdlib.losses.chunked import chunked_divergence, chunked_reverse_kl
from kdlib.losses.divergences import generalized_jsd

BETA_OF = {"reverse_kl": 1.0, "forward_kl": 0.0}


def _setup(n: int = 23, ds: int = 12, dt: int = 20, v: int = 41, bias: bool = True):
    g = torch.Generator().manual_seed(0)
    hs = torch.randn(n, ds, generator=g, requires_grad=True)
    head = nn.Linear(ds, v, bias=bias)
    with torch.no_grad():
        head.weight.copy_(torch.randn(v, ds, generator=g))
        if bias:
            head.bias.copy_(torch.randn(v, generator=g))
    ht, wt = torch.randn(n, dt, generator=g), torch.randn(v, dt, generator=g)
    mask = torch.rand(n, generator=g) > 0.3
    return hs, head, ht, wt, mask


def _grads(loss: torch.Tensor, hs: torch.Tensor, head: nn.Linear) -> list[torch.Tensor]:
    params = [hs, head.weight] + ([head.bias] if head.bias is not None else [])
    return list(torch.autograd.grad(loss, params))


@pytest.mark.parametrize("kind,beta", [("reverse_kl", 0.5), ("forward_kl", 0.5), ("jsd", 0.5), ("jsd", 0.2),
                                       ("jsd", 0.0), ("jsd", 1.0)])
@pytest.mark.parametrize("chunk", [4, 7, 64])  # 7 does not divide the 23 rows (nor the counted ones)
def test_chunked_equals_plain(kind: str, beta: float, chunk: int) -> None:
    hs, head, ht, wt, mask = _setup()
    lean = chunked_divergence(hs, head, ht, wt, mask, kind, beta, chunk_size=chunk)
    plain = generalized_jsd(head(hs), ht @ wt.T, BETA_OF.get(kind, beta), mask)
    assert torch.allclose(lean, plain, atol=1e-5, rtol=1e-5)
    for a, b in zip(_grads(lean, hs, head), _grads(plain, hs, head)):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)


def test_weight_tensor_heads_no_bias_and_global_denominator() -> None:
    hs, head, ht, wt, mask = _setup(bias=False)
    lean = chunked_reverse_kl(hs, head.weight, ht, wt, mask, chunk_size=5, denom=100)
    plain = generalized_jsd(head(hs), ht @ wt.T, 1.0, mask, denom=100)
    assert torch.allclose(lean, plain, atol=1e-6)
    assert torch.allclose(_grads(lean, hs, head)[0], _grads(plain, hs, head)[0], atol=1e-6)


def test_teacher_gets_no_gradient_and_all_masked_is_zero() -> None:
    hs, head, ht, wt, mask = _setup()
    ht.requires_grad_(True)
    wt.requires_grad_(True)
    loss = chunked_divergence(hs, head, ht, wt, torch.zeros_like(mask), "jsd")
    loss.backward()
    assert loss.item() == 0.0 and ht.grad is None and wt.grad is None
    assert torch.isfinite(hs.grad).all() and (hs.grad == 0).all()


def test_bf16_inputs_float32_value_and_grads_in_input_dtype() -> None:
    hs, head, ht, wt, mask = _setup()
    hs16 = hs.detach().bfloat16().requires_grad_()
    w16 = head.weight.detach().bfloat16().requires_grad_()
    loss = chunked_divergence(hs16, w16, ht.bfloat16(), wt.bfloat16(), mask, chunk_size=6)
    loss.backward()
    assert loss.dtype == torch.float32 and hs16.grad.dtype == torch.bfloat16 and w16.grad.dtype == torch.bfloat16
    # same numbers as the plain path of a bf16 model: bf16 logits, float32 divergence
    hs_ref = hs16.detach().clone().requires_grad_()
    plain = generalized_jsd(hs_ref @ w16.detach().T, ht.bfloat16() @ wt.bfloat16().T, 1.0, mask)
    plain.backward()
    assert torch.allclose(loss, plain, rtol=1e-5)
    assert torch.allclose(hs16.grad.float(), hs_ref.grad.float(), rtol=2e-2, atol=1e-3)


def test_bad_inputs_are_clear_errors() -> None:
    hs, head, ht, wt, mask = _setup()
    with pytest.raises(ValueError, match="vocabulary"):
        chunked_divergence(hs, head, ht, wt[:-1], mask)
    with pytest.raises(ValueError, match="unknown divergence"):
        chunked_divergence(hs, head, ht, wt, mask, "tv")  # type: ignore[arg-type]


def test_row_weights_match_the_weighted_single_step_loss() -> None:
    from kdlib.losses.minillm import single_step_loss
    torch.manual_seed(3)
    hs, ws, ht, wt = torch.randn(6, 4, requires_grad=True), torch.randn(9, 4), torch.randn(6, 5), torch.randn(9, 5)
    w = torch.rand(6) + 0.5
    got = chunked_divergence(hs, ws, ht, wt, chunk_size=4, denom=3, weights=w)
    want = single_step_loss((hs @ ws.T)[None], (ht @ wt.T)[None], torch.ones(1, 6, dtype=torch.bool), denom=3,
                            weights=w[None])
    (g1,), (g2,) = torch.autograd.grad(got, hs), torch.autograd.grad(want, hs)
    assert torch.allclose(got, want, atol=1e-5) and torch.allclose(g1, g2, atol=1e-5)
