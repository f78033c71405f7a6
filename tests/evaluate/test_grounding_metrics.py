"""Referring / grounding acc@0.5 and acc@0.25 (kdlib.evaluate.grounding)."""

from __future__ import annotations

import pytest
from PIL import Image

from kdlib.boxes import quad_polygon, rbox_to_quad
from kdlib.data.geochat_bench import ReferringAnswer, read_answers
from kdlib.evaluate.grounding import (greedy_matches, grounding_metrics, image_size_of, image_sizes_from_dir,
                                      record_hits)


def square(x: float, y: float, side: float = 10.0) -> list[list[float]]:
    return [[x, y], [x + side, y], [x + side, y + side], [x, y + side]]


def record(answer: str, quads: list, dataset: str = "FAST", type_: str = "ref", size_group: str = "small",
           image_id: str = "img") -> ReferringAnswer:
    return ReferringAnswer("q", image_id, "obj", answer, quads, type_, dataset, size_group)


def test_greedy_matching_is_one_to_one_by_decreasing_iou() -> None:
    a, b = quad_polygon(square(0, 0)), quad_polygon(square(6, 0))
    p, q = quad_polygon(square(2, 0)), quad_polygon(square(0, 0))
    # IoU(q, a) = 1, IoU(p, a) = 80/120, IoU(p, b) = 60/140, IoU(q, b) = 40/160 (not > 0.25).
    # Greedy by IoU pairs q-a first, then p-b; taking p first would leave q without a partner.
    assert greedy_matches([a, b], [p, q], 0.25) == 2
    assert greedy_matches([a, b], [p, q], 0.5) == 1
    assert greedy_matches([a, b], [q, q], 0.5) == 1  # a duplicate box matches once
    assert greedy_matches([a, b], [], 0.25) == 0


def test_threshold_is_strict() -> None:
    gt = [quad_polygon(square(0, 0))]
    half = [quad_polygon([[0, 0], [5, 0], [5, 10], [0, 10]])]  # IoU exactly 0.5
    assert greedy_matches(gt, half, 0.5) == 0
    assert greedy_matches(gt, half, 0.25) == 1


def test_accuracy_is_tp_over_ground_truth_boxes() -> None:
    # 100 x 100 image: grid units are pixels. Question 1: 2 objects, one found (plus a stray box).
    # Question 2: 1 object, an answer without a box.
    records = [
        record("<p>a</p>{<0><0><10><10>|<0>}{<50><50><60><60>|<0>}", [square(0, 0), square(20, 20)],
               type_="ref", size_group="small"),
        record("There is none.", [square(0, 0)], type_="grounding", size_group="large"),
    ]
    scores = grounding_metrics(records, image_size=100)
    assert scores["acc@0.5"] == pytest.approx(100 / 3)
    assert (scores["n"], scores["n_boxes"]) == (2, 3)
    assert scores["per_type"]["ref"]["acc@0.5"] == pytest.approx(50.0)
    assert scores["per_size_group"]["large"] == {"acc@0.5": 0.0, "acc@0.25": 0.0, "n": 1, "n_boxes": 1}


def test_rotated_answer_box_matches_rotated_quad() -> None:
    # A 40 x 10 px box turned 30 degrees about (50, 50) in a 100 px image, written on the grid.
    quad = [list(p) for p in rbox_to_quad(50, 50, 40, 10, 30)]
    assert record_hits(record("{<30><45><70><55>|<30>}", [quad]), (100, 100)) == {0.5: 1, 0.25: 1}
    assert record_hits(record("{<30><45><70><55>|<-30>}", [quad]), (100, 100))[0.5] == 0


def test_image_size_precedence_and_defaults(tmp_path) -> None:
    rec = record("", [square(0, 0)], dataset="SOTA", image_id="P1")
    assert image_size_of(rec) == (1024, 1024)
    assert image_size_of(rec, image_size=512) == (512, 512)
    Image.new("RGB", (300, 200)).save(tmp_path / "P1.png")
    sizes = image_sizes_from_dir(tmp_path, ["P1", "P1"])
    assert image_size_of(rec, image_size=512, image_sizes=sizes) == (300, 200)
    with pytest.raises(ValueError, match="no image size for dataset 'NEW'"):
        image_size_of(record("", [square(0, 0)], dataset="NEW"))
    with pytest.raises(FileNotFoundError, match="P2.png"):
        image_sizes_from_dir(tmp_path, ["P2"])


def test_real_referring_file_groups_add_up(data_root) -> None:
    records = read_answers(data_root / "geochat_bench" / "referring_geochat_7b.jsonl", "referring").records
    scores = grounding_metrics(records)
    for key in ("per_type", "per_size_group"):
        groups = scores[key].values()
        assert sum(g["n_boxes"] for g in groups) == scores["n_boxes"] == sum(len(r.ground_truth) for r in records)
        weighted = sum(g["acc@0.5"] * g["n_boxes"] for g in groups) / scores["n_boxes"]
        assert weighted == pytest.approx(scores["acc@0.5"])
    assert 0 < scores["acc@0.5"] < scores["acc@0.25"] < 100
