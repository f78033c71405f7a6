"""DOTA tiles: box text round trip against the pixel quads, one tile (and split) per object."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from kdlib.boxes import box_polygon, parse_geochat_boxes, quad_polygon, rbox_to_quad, rotated_iou
from kdlib.data import TileSpec, dota_region_records, read_dota
from kdlib.data.dota import DotaObject
from kdlib.data.records import Record
from kdlib.data.regions import category_phrase, position, tile_grid
from kdlib.data.splits import SPLITS


@pytest.fixture(scope="module")
def regions(data_root):
    return dota_region_records(read_dota(data_root))


def test_box_text_matches_the_quads(regions):
    """Second formulation: the answer's grid boxes, drawn back in pixels, overlap the source quads."""
    assert {r.task for r in regions} == {"refer", "grounding", "region_caption"}
    for rec in regions:
        text = rec.question if rec.task == "region_caption" else rec.answer
        boxes = parse_geochat_boxes(text, strict=True)
        assert len(boxes) == len(rec.meta["boxes"])
        for box, quad in zip(boxes, rec.meta["boxes"]):
            assert rotated_iou(box_polygon(box, rec.meta["width"], rec.meta["height"]), quad_polygon(quad)) > 0.75


def test_each_object_in_one_tile(regions):
    tiles = defaultdict(set)
    for rec in regions:
        left, top = rec.meta["crop"][:2]
        for quad in rec.meta["boxes"]:
            tiles[(rec.meta["source_image"], tuple((x + left, y + top) for x, y in quad))].add(rec.image_key)
    assert max(len(v) for v in tiles.values()) == 1


def test_no_object_in_two_study_splits(tiny_study):
    split_of = {}
    for name in SPLITS:
        for rec in tiny_study.split(name):
            if rec.dataset == "dota":
                left, top = rec.meta["crop"][:2]
                for quad in rec.meta["boxes"]:
                    key = (rec.meta["source_image"], tuple((x + left, y + top) for x, y in quad))
                    assert split_of.setdefault(key, name) == name
    assert len(set(split_of.values())) == 3


def test_expressions_count_the_boxes(regions):
    for rec in regions:
        if rec.task in ("refer", "grounding"):
            count = sum(int(n) for n in re.findall(r"(\d+) [a-z]", rec.question))
            assert count == len(parse_geochat_boxes(rec.answer)) == len(rec.meta["categories"])
        assert "DOTA" in rec.meta["note"]


def test_helpers():
    assert tile_grid(300, 200, 128) == [(0, 0, 128, 128), (128, 0, 256, 128), (0, 128, 128, 200), (128, 128, 256, 200)]
    assert position(10, 10, 90, 90) == "top left" and position(45, 45, 90, 90) == "center"
    assert position(89, 45, 90, 90) == "right" and position(45, 89, 90, 90) == "bottom"
    assert category_phrase("small-vehicle", 2) == "2 small vehicles" and category_phrase("ship", 1) == "1 ship"
    with pytest.raises(ValueError):
        TileSpec(tile=8)


def _grid_values(rec) -> list[float]:
    text = rec.question if rec.task == "region_caption" else rec.answer
    return [v for b in parse_geochat_boxes(text, strict=True) for v in (b.x1, b.y1, b.x2, b.y2)]


def test_every_box_of_every_prompt_lies_on_the_grid(regions):
    values = [v for rec in regions for v in _grid_values(rec)]
    assert values and min(values) >= 0 and max(values) <= 100


def test_an_object_whose_box_leaves_the_grid_counts_as_cut():
    """A thin ship at theta 82 along the left border lies inside the crop, but GeoChat's unrotated
    rectangle of it starts at x = -12: no prompt shows it, and the other ship of its cell gets no
    referring prompt (the count would be ambiguous) but keeps its region caption."""
    thin = DotaObject(tuple(rbox_to_quad(5.0, 80.0, 40.0, 4.0, 82.0)), "ship", False)
    plain = DotaObject(((10.0, 60.0), (30.0, 60.0), (30.0, 70.0), (10.0, 70.0)), "ship", False)
    assert min(x for x, _ in thin.quad) > 0
    source = Record(id="dota/synthetic", task="grounding", image=None, question="", answer="",
                    meta={"dataset": "dota", "objects": (thin, plain), "width": 128, "height": 128})
    records = dota_region_records([source], TileSpec(tile=128))
    assert all(0 <= v <= 100 for rec in records for v in _grid_values(rec))
    assert not any(list(thin.quad) == [tuple(p) for p in box] for rec in records for box in rec.meta["boxes"])
    assert [r.task for r in records] == ["region_caption"] and records[0].meta["categories"] == ["ship"]
