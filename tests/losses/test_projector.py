"""Projector MSE (Eq. 4) and the width map."""

from __future__ import annotations

import pytest
import torch

from kdlib.losses.projector import WidthMap, projector_mse


def test_normalisation_half_squared_norm_averaged_over_tokens() -> None:
    s = torch.zeros(1, 2, 3)
    t = torch.tensor([[[1.0, 2.0, 2.0], [0.0, 0.0, 4.0]]])
    # token 1: 1/2 (1 + 4 + 4) = 4.5; token 2: 1/2 * 16 = 8; mean 6.25
    assert projector_mse(s, t).item() == pytest.approx(6.25)
    assert projector_mse(s, t, mask=torch.tensor([[True, False]])).item() == pytest.approx(4.5)
    # relation to the element-mean MSE (Align-KD): times 2 / D
    assert torch.allclose(projector_mse(s, t) * 2 / 3, torch.nn.functional.mse_loss(s, t))


def test_gradient_is_eq5() -> None:
    s = torch.randn(2, 5, 4, requires_grad=True)
    t = torch.randn(2, 5, 4)
    (g,) = torch.autograd.grad(projector_mse(s, t), s)
    assert torch.allclose(g, (s - t).detach() / 10)  # -(z_T - z_S) per token, averaged over 10 tokens


def test_width_map_identity_and_learned() -> None:
    assert list(WidthMap(8, 8).parameters()) == []
    wm = WidthMap(10, 6)
    s, t = torch.randn(2, 3, 6), torch.randn(2, 3, 10, requires_grad=True)
    loss = projector_mse(s, t, wm)
    loss.backward()
    assert wm.linear.weight.grad is not None and t.grad is None
    # semi-orthogonal init: rows orthonormal
    w = wm.linear.weight
    assert torch.allclose(w @ w.T, torch.eye(6), atol=1e-5)


def test_width_mismatch_without_map_names_the_fix() -> None:
    with pytest.raises(ValueError, match=r"WidthMap\(10, 6\)"):
        projector_mse(torch.randn(1, 2, 6), torch.randn(1, 2, 10))
