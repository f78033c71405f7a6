"""GeoChat box text, quad <-> rotated box conversion and rotated IoU (kdlib.boxes)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from kdlib.boxes import (
    GeoBox,
    box_polygon,
    format_geochat_box,
    on_grid,
    parse_geochat_boxes,
    quad_polygon,
    quad_to_geobox,
    quad_to_geochat_box,
    quad_to_rbox,
    rbox_to_quad,
    rotated_iou,
)


def test_format_rounds_orders_and_keeps_out_of_grid_values() -> None:
    assert format_geochat_box(30.4, 90.2, 10.6, 20.0, 44.6) == "{<11><20><30><90>|<45>}"
    assert format_geochat_box(-0.7, 0, 3, 2) == "{<-1><0><3><2>|<0>}"
    with pytest.raises(ValueError, match="finite"):
        format_geochat_box(math.nan, 0, 1, 1)


def test_parse_several_boxes_text_and_missing_theta() -> None:
    text = "<p>planes</p> {<86><34><94><42>|<56>}{<50><20><58><28>} and { <1> <2><3><4> | <90> }"
    assert parse_geochat_boxes(text) == [
        GeoBox(86, 34, 94, 42, 56),
        GeoBox(50, 20, 58, 28, 0),
        GeoBox(1, 2, 3, 4, 90),
    ]
    assert parse_geochat_boxes("There are 3 harbors at the bottom right.") == []
    assert GeoBox(86, 34, 94, 42, 56).to_text() == "{<86><34><94><42>|<56>}"


@pytest.mark.parametrize(
    ("text", "problem", "n_tolerant"),
    [
        ("{<1><2><3>|<4>}{<1><2><3><4>}", "bad box {<1><2><3>|<4>}", 1),
        ("{<1><2><3><4>|<5>}{<6><7>", "unbalanced braces", 1),
    ],
)
def test_parse_strict_names_the_problem(text: str, problem: str, n_tolerant: int) -> None:
    assert len(parse_geochat_boxes(text)) == n_tolerant
    with pytest.raises(ValueError, match=problem.replace("{", r"\{").replace("|", r"\|")):
        parse_geochat_boxes(text, strict=True)


@pytest.mark.parametrize("theta", [15.0, 45.0, 73.0, 90.0])
def test_rbox_quad_round_trip(theta: float) -> None:
    quad = rbox_to_quad(50.0, 40.0, 30.0, 10.0, theta)
    assert quad_to_rbox(quad) == pytest.approx((50.0, 40.0, 30.0, 10.0, theta))


def test_rotation_turns_the_width_side_towards_positive_y() -> None:
    quad = rbox_to_quad(0.0, 0.0, 2.0, 0.0, 30.0)
    (xa, ya), (xb, yb) = quad[0], quad[1]
    assert (xb - xa, yb - ya) == pytest.approx((2 * math.cos(math.pi / 6), 2 * math.sin(math.pi / 6)))


def test_quad_to_rbox_angle_convention() -> None:
    # Axis-aligned: theta 90 with w the vertical extent (OpenCV minAreaRect >= 4.5.1).
    assert quad_to_rbox([[0, 0], [10, 0], [10, 4], [0, 4]]) == pytest.approx((5, 2, 4, 10, 90))
    # A side at -30 degrees is reported as the perpendicular side at +60 degrees.
    assert quad_to_rbox(rbox_to_quad(0, 0, 6, 2, -30)) == pytest.approx((0, 0, 2, 6, 60))
    with pytest.raises(ValueError, match="4 \\[x, y\\] corners"):
        quad_to_rbox([[0, 0], [1, 1]])


def test_rotated_iou_hand_computed() -> None:
    square = quad_polygon([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    # The square and itself turned 45 degrees meet in a regular octagon of inradius 1:
    # area 8 (sqrt 2 - 1), union 8 - 8 (sqrt 2 - 1), IoU = 1 / sqrt 2.
    turned = quad_polygon(rbox_to_quad(0, 0, 2, 2, 45))
    assert rotated_iou(square, turned) == pytest.approx(1 / math.sqrt(2))
    shifted = quad_polygon([[0, -1], [2, -1], [2, 1], [0, 1]])
    assert rotated_iou(square, shifted) == pytest.approx(2 / 6)
    assert rotated_iou(quad_polygon([[0, 0], [0, 0], [0, 0], [0, 0]]), square) == 0.0


def test_box_polygon_scales_to_pixels_and_quad_order_does_not_matter() -> None:
    box = GeoBox(10, 20, 30, 60, 90)  # 40 x 80 px centred on (40, 80), turned: 80 x 40 px
    poly = box_polygon(box, 200, 200)
    assert poly.bounds == pytest.approx((0, 60, 80, 100))
    bow_tie = quad_polygon([[0, 60], [80, 100], [80, 60], [0, 100]])
    assert rotated_iou(poly, bow_tie) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="image size"):
        box_polygon(box, 0, 100)


def test_quad_to_geochat_box_matches_bench_example() -> None:
    # GeoChat-Bench region caption sior_31: question box and the referring quad of object 1.
    quad = [[707.0, 262.0], [716.0, 262.0], [716.0, 291.0], [707.0, 291.0]]
    assert quad_to_geochat_box(quad, 800, 800) == "{<87><34><91><35>|<90>}"


def _bench_pairs(root: Path) -> list[tuple[str, list[list[float]], int]]:
    """(question box, ground-truth quad, image size) for region captions of referring objects."""
    bench = root / "geochat_bench"
    quads = {}
    for line in (bench / "referring_geochat_7b.jsonl").open():
        rec = json.loads(line)
        for obj, quad in zip(rec["obj_ids"], rec["ground_truth"]):
            quads[rec["dataset"], rec["image_id"], obj] = quad
    pairs = []
    for line in (bench / "region_caption_geochat_7b.jsonl").open():
        rec = json.loads(line)
        key = (rec["dataset"], rec["image_id"], rec["obj_ids"][0])
        if len(rec["obj_ids"]) == 1 and key in quads and rec["dataset"] == "SIOR":
            pairs.append((rec["question"], quads[key], 800))
    return pairs


def test_convention_on_real_bench_boxes(data_root: Path) -> None:
    pairs = _bench_pairs(data_root)
    assert len(pairs) > 1000
    exact = sum(quad_to_geochat_box(quad, size, size) == text for text, quad, size in pairs)
    assert exact / len(pairs) > 0.95

    def mean_iou(sign: int) -> float:
        total = 0.0
        for text, quad, size in pairs:
            box = parse_geochat_boxes(text, strict=True)[0]
            box = GeoBox(box.x1, box.y1, box.x2, box.y2, sign * box.theta)
            total += rotated_iou(box_polygon(box, size, size), quad_polygon(quad))
        return total / len(pairs)

    assert mean_iou(+1) > mean_iou(-1) + 0.1


def test_on_grid_reads_the_box_as_written() -> None:
    thin = rbox_to_quad(5.0, 80.0, 40.0, 4.0, 82.0)  # inside a 128 px image, its unrotated rectangle is not
    box = quad_to_geobox(thin, 128, 128)
    assert box.to_text() == quad_to_geochat_box(thin, 128, 128) and box.x1 < 0 and not on_grid(box)
    assert on_grid(GeoBox(-0.4, 0.0, 100.4, 50.0, 90.0)) and not on_grid(GeoBox(-0.6, 0.0, 50.0, 50.0))
    assert on_grid(quad_to_geobox(((10, 60), (30, 60), (30, 70), (10, 70)), 128, 128))
