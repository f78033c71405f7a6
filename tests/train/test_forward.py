"""Chunked log-probs from hidden states equal the plain logits path, values and gradients."""

from __future__ import annotations

import torch
from torch import nn

from kdlib.train.forward import response_rows, shift_for_labels, token_logprobs_chunked


def test_chunked_logprobs_equal_the_plain_path():
    gen = torch.Generator().manual_seed(0)
    head = nn.Linear(8, 11)
    hidden = torch.randn(13, 8, generator=gen, requires_grad=True)
    tokens = torch.randint(0, 11, (13,), generator=gen)
    chunked = token_logprobs_chunked(hidden, head, tokens, chunk_size=4)
    (chunked * torch.arange(13.0)).sum().backward()
    grads = hidden.grad.clone(), head.weight.grad.clone(), head.bias.grad.clone()
    hidden.grad = head.weight.grad = head.bias.grad = None
    plain = head(hidden).log_softmax(-1).gather(-1, tokens[:, None]).squeeze(-1)
    (plain * torch.arange(13.0)).sum().backward()
    torch.testing.assert_close(chunked, plain)
    for got, want in zip(grads, (hidden.grad, head.weight.grad, head.bias.grad)):
        torch.testing.assert_close(got, want)


def test_response_rows_are_the_positions_before_each_response_token():
    hidden = torch.arange(2 * 6, dtype=torch.float32).view(2, 6, 1)  # value = 6 b + position
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    rows = response_rows(hidden, prompt_len=3, mask=mask)  # tokens at 3, 4, 5: predicted from 2, 3, 4
    assert rows.squeeze(-1).tolist() == [2, 3, 8, 9, 10]


def test_label_shift_keeps_scored_positions():
    hidden = torch.arange(5, dtype=torch.float32).view(1, 5, 1)
    labels = torch.tensor([[-100, -100, 7, 8, -100]])
    rows, targets, mask = shift_for_labels(hidden, labels)
    assert rows.squeeze(-1).tolist() == [1, 2] and targets.tolist() == [7, 8] and mask.sum() == 2
