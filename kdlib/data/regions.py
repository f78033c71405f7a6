"""Referring, grounding and region-caption records cut from DOTA images (a conversion).

GeoChat's referring / grounding / region-caption data (from SAMRS: DOTA, DIOR, FAIR1M) has no
images offline; the only real images with real oriented boxes are the two DOTA devkit examples
(``docs/data.md`` §7: 600 objects, 531 of them ships in one harbour image). This module cuts each image
into a grid of ``tile x tile`` crops (the last row / column clipped to the image, crops narrower
than half a tile dropped) and writes GeoChat-style prompts about the objects that lie *entirely*
inside a crop and whose GeoChat box stays on the crop's 0-100 grid (:func:`kdlib.boxes.on_grid`):

- ``refer``: per cell of the crop's 3 x 3 grid and category with 1..``max_boxes`` objects
  centred there, ``[refer] Give me the location of <p> {n} {category}s at the {cell} </p>`` ->
  their boxes ``{<x1><y1><x2><y2>|<theta>}...`` (0-100 grid of the crop);
- ``grounding``: per cell with 2..``max_boxes`` objects (any categories),
  ``[grounding]{counts} close to each other at the {cell}`` -> all their boxes;
- ``region_caption``: up to ``captions_per_tile`` objects per crop (hash order),
  ``[identify] What is the object present at {box}`` -> ``1 {category} at the {cell}``.

Expressions follow GeoChat-Bench's wording ("3 airplanes at the right", "2 silver a220
airplanes , close to each other at left"); ``cell`` is "top left" ... "center". A cell where an
object of the category is cut by the crop border gets no referring / grounding prompt for it
(the count would be ambiguous). An object whose box would leave the grid (a thin rotated object
along the border: the *unrotated* rectangle GeoChat writes pokes out, ``{<-3><68><31><75>|<82>}``)
counts as cut too. Clamping such a box to ``[0, 100]`` instead would keep it but not its shape: on
the two DOTA images (14 of the 329 objects that lie inside a 128 px crop) the clamped boxes overlap
their objects with a mean IoU of 0.60 (worst 0.07), the exact ones with 0.91 (worst 0.87).

Each record keeps the crop in ``meta["crop"]`` (so :attr:`Record.image_key` differs per crop
and splits group by crop: an object lies in one crop only, hence in one split), the
ground-truth pixel quads of the crop in ``meta["boxes"]`` (in the answer's box order, the form
of GeoChat-Bench's ``ground_truth``), and in ``meta["note"]`` how small this set is: a plumbing
and format check, not a grounding benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdlib.boxes import on_grid, quad_to_geobox, quad_to_geochat_box
from kdlib.data.dota import DotaObject
from kdlib.data.prompts import grounding_query, identify_query, refer_query
from kdlib.data.records import Record
from kdlib.data.splits import hash_order

NOTE = ("derived from the 2 DOTA devkit example images cut into tiles; a check of box formats and "
        "of the grounding code path, not a grounding benchmark")
_ROWS, _COLS = ("top", "", "bottom"), ("left", "", "right")


@dataclass(frozen=True)
class TileSpec:
    """How DOTA images are cut: tile side (pixels), boxes per answer, region captions per tile."""

    tile: int = 128
    max_boxes: int = 4
    captions_per_tile: int = 4

    def __post_init__(self) -> None:
        if self.tile < 32 or self.max_boxes < 1 or self.captions_per_tile < 0:
            raise ValueError(f"bad TileSpec {self}: tile >= 32, max_boxes >= 1, captions_per_tile >= 0")


def tile_grid(width: int, height: int, tile: int) -> list[tuple[int, int, int, int]]:
    """Crops ``(left, top, right, bottom)`` of a ``tile`` grid, clipped; crops under ``tile / 2`` dropped."""
    boxes = []
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            right, bottom = min(left + tile, width), min(top + tile, height)
            if right - left >= tile / 2 and bottom - top >= tile / 2:
                boxes.append((left, top, right, bottom))
    return boxes


def position(x: float, y: float, width: float, height: float) -> str:
    """``"top left"`` ... ``"center"``: the 3 x 3 cell of the point ``(x, y)`` in a ``width x height`` crop."""
    row = _ROWS[min(int(3 * y / height), 2)]
    col = _COLS[min(int(3 * x / width), 2)]
    return " ".join(p for p in (row, col) if p) or "center"


def category_phrase(category: str, count: int) -> str:
    """``"small-vehicle", 2`` -> ``"2 small vehicles"``."""
    name = category.replace("-", " ")
    return f"{count} {name}{'s' if count != 1 else ''}"


def _inside(obj: DotaObject, crop: tuple[int, int, int, int]) -> bool:
    left, top, right, bottom = crop
    return all(left <= x <= right and top <= y <= bottom for x, y in obj.quad)


def _overlaps(obj: DotaObject, crop: tuple[int, int, int, int]) -> bool:
    left, top, right, bottom = crop
    xs, ys = [p[0] for p in obj.quad], [p[1] for p in obj.quad]
    return min(xs) < right and max(xs) > left and min(ys) < bottom and max(ys) > top


def _reading_order(objs: list[DotaObject]) -> list[DotaObject]:
    """Objects sorted by centre, top to bottom then left to right (the order of answers and ``boxes``)."""
    return sorted(objs, key=lambda o: (o.centre[1], o.centre[0]))


def _clipped_centre(obj: DotaObject, crop: tuple[int, int, int, int]) -> tuple[float, float]:
    """Centre of the object's bounding box clipped to the crop, in crop coordinates."""
    left, top, right, bottom = crop
    xs = [min(max(p[0], left), right) for p in obj.quad]
    ys = [min(max(p[1], top), bottom) for p in obj.quad]
    return (min(xs) + max(xs)) / 2 - left, (min(ys) + max(ys)) / 2 - top


class _Tile:
    """One crop of one image: its whole objects (inside, box on the grid), those cut by its border, box text."""

    def __init__(self, source: Record, crop: tuple[int, int, int, int]):
        self.source, self.crop = source, crop
        self.width, self.height = crop[2] - crop[0], crop[3] - crop[1]
        objects = source.meta["objects"]
        whole = [_inside(o, crop) and on_grid(quad_to_geobox(self.local(o), self.width, self.height))
                 for o in objects]
        self.objects = [o for o, keep in zip(objects, whole) if keep]
        self.cut = [(o, _clipped_centre(o, crop)) for o, keep in zip(objects, whole) if _overlaps(o, crop) and not keep]

    def local(self, obj: DotaObject) -> list[tuple[float, float]]:
        return [(x - self.crop[0], y - self.crop[1]) for x, y in obj.quad]

    def box_text(self, objs: list[DotaObject]) -> str:
        """The objects' GeoChat boxes on the crop's 0-100 grid, in reading order (top to bottom)."""
        return "".join(quad_to_geochat_box(self.local(o), self.width, self.height) for o in _reading_order(objs))

    def where(self, objs: list[DotaObject]) -> str:
        cx = sum(o.centre[0] for o in objs) / len(objs) - self.crop[0]
        cy = sum(o.centre[1] for o in objs) / len(objs) - self.crop[1]
        return position(cx, cy, self.width, self.height)

    def record(self, suffix: str, task: str, question: str, answer: str, objs: list[DotaObject]) -> Record:
        left, top = self.crop[:2]
        return Record(
            id=f"{self.source.id}/{left}_{top}/{suffix}", task=task, image=self.source.image,
            question=question, answer=answer,
            meta={"dataset": "dota", "crop": self.crop, "source_image": self.source.id,
                  "width": self.width, "height": self.height,
                  "boxes": [self.local(o) for o in _reading_order(objs)],
                  "categories": [o.category for o in _reading_order(objs)], "note": NOTE},
        )


def _cells(tile: _Tile) -> tuple[dict[str, list[DotaObject]], dict[str, set[str]]]:
    """Whole objects by 3 x 3 cell of their centre; categories of border-cut objects by cell."""
    whole: dict[str, list[DotaObject]] = {}
    for obj in tile.objects:
        whole.setdefault(tile.where([obj]), []).append(obj)
    cut: dict[str, set[str]] = {}
    for obj, (cx, cy) in tile.cut:
        cut.setdefault(position(cx, cy, tile.width, tile.height), set()).add(obj.category)
    return whole, cut


def _refer_and_grounding(tile: _Tile, max_boxes: int) -> list[Record]:
    """Per 3 x 3 cell: one ``refer`` record per category, one ``grounding`` record per group."""
    out = []
    whole, cut = _cells(tile)
    for cell, objs in sorted(whole.items()):
        name = cell.replace(" ", "_")
        by_cat: dict[str, list[DotaObject]] = {}
        for obj in objs:
            by_cat.setdefault(obj.category, []).append(obj)
        for cat, group in sorted(by_cat.items()):
            if cat not in cut.get(cell, set()) and len(group) <= max_boxes:
                expression = f"{category_phrase(cat, len(group))} at the {cell}"
                out.append(tile.record(f"refer/{name}/{cat}", "refer", refer_query(expression),
                                       tile.box_text(group), group))
        if 2 <= len(objs) <= max_boxes and not cut.get(cell):
            phrase = " ".join(category_phrase(c, len(g)) for c, g in sorted(by_cat.items()))
            expression = f"{phrase} close to each other at the {cell}"
            out.append(tile.record(f"grounding/{name}", "grounding", grounding_query(expression),
                                   tile.box_text(objs), objs))
    return out


def _region_captions(tile: _Tile, per_tile: int, seed: int) -> list[Record]:
    """Up to ``per_tile`` objects of the tile (hash order): box in the question, caption as answer."""
    out = []
    index = {f"{tile.source.id}/{tile.crop}/{i}": o for i, o in enumerate(tile.objects)}
    for key in hash_order(index, seed, "regions")[:per_tile]:
        obj = index[key]
        caption = f"{category_phrase(obj.category, 1)} at the {tile.where([obj])}"
        out.append(tile.record(f"region/{key.rsplit('/', 1)[1]}", "region_caption",
                               identify_query(tile.box_text([obj])), caption, [obj]))
    return out


def dota_region_records(annotations: list[Record], spec: TileSpec = TileSpec(), seed: int = 0) -> list[Record]:
    """Refer / grounding / region-caption records from :func:`kdlib.data.dota.read_dota` output."""
    out = []
    for source in annotations:
        for crop in tile_grid(source.meta["width"], source.meta["height"], spec.tile):
            tile = _Tile(source, crop)
            out += _refer_and_grounding(tile, spec.max_boxes) + _region_captions(tile, spec.captions_per_tile, seed)
    return out
