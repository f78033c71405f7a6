import math

import torch

from kdlib.analysis import adjacent_layer_cosine, vision_text_cosine, vision_text_distance


def rotation(d: int, angle: float) -> torch.Tensor:
    r = torch.eye(d)
    r[0, 0] = r[1, 1] = math.cos(angle)
    r[0, 1], r[1, 0] = -math.sin(angle), math.sin(angle)
    return r


def test_identical_layers_have_similarity_one():
    h = torch.randn(2, 5, 8)
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert torch.allclose(adjacent_layer_cosine([h, h, h], mask), torch.ones(2))


def test_a_known_rotation_gives_its_cosine():
    angle = 0.7
    h0 = torch.zeros(3, 4, 6)
    h0[..., 0] = torch.rand(3, 4) + 0.5  # features in the plane the rotation acts on
    h1 = h0 @ rotation(6, angle).T
    mask = torch.ones(3, 4, dtype=torch.bool)
    assert torch.allclose(adjacent_layer_cosine([h0, h1], mask), torch.tensor([math.cos(angle)]), atol=1e-6)


def test_masked_positions_do_not_count():
    h0, h1 = torch.randn(1, 4, 8), torch.randn(1, 4, 8)
    h1[0, :2] = h0[0, :2]
    mask = torch.tensor([[True, True, False, False]])
    assert torch.allclose(adjacent_layer_cosine([h0, h1], mask), torch.ones(1))


def test_vision_text_measures():
    d = 6
    h = torch.zeros(2, 4, d)
    h[:, :2, 0] = 1.0  # vision tokens along e0
    h[:, 2:, 1] = 2.0  # text tokens along e1: orthogonal
    vision = torch.tensor([[True, True, False, False]] * 2)
    text = ~vision
    same = h.clone()
    same[:, 2:] = same[:, :2] * 3  # text parallel to vision
    cos = vision_text_cosine([h, same], vision, text)
    dist = vision_text_distance([h, same], vision, text)
    assert torch.allclose(cos, torch.tensor([0.0, 1.0]), atol=1e-6)
    assert torch.allclose(dist, torch.tensor([math.sqrt(2) / 2, 0.0]), atol=1e-6)
    # the documented identity: distance = sqrt((1 - cos) / 2) for one sample
    x = [torch.randn(1, 4, d)]
    c, e = vision_text_cosine(x, vision[:1], text[:1]), vision_text_distance(x, vision[:1], text[:1])
    assert torch.allclose(e, torch.sqrt((1 - c) / 2), atol=1e-6)
