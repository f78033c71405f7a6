"""Referring expressions / grounding: acc@0.5 and acc@0.25 with oriented-box IoU.

Each answer's GeoChat boxes ``{<x1><y1><x2><y2>|<theta>}`` (0-100 grid) are turned into pixel
polygons (:func:`kdlib.boxes.box_polygon`) and compared with the ground-truth pixel quads by
polygon IoU (shapely). Several boxes per answer (GeoChat writes ``}{``) and several
ground-truth objects per question are matched one-to-one, greedily by decreasing IoU: every
pair with ``IoU > t`` (the core paper: "IoU > 0.5 and > 0.25") is sorted, and a pair is taken
when neither box is taken yet (as TEOChat's ``get_single_image_results_rotated``).

    acc@t = sum_questions TP_t / sum_questions (number of ground-truth boxes)

An answer without a parsable box scores 0 TP; extra predicted boxes cost nothing (acc is a
recall). Results are also given per ``type`` and per ``size_group``.

The image size is needed to scale the grid to pixels and is not in the answer files. It is
taken, in this order, from ``image_sizes[image_id]`` (e.g. read from the images,
:func:`image_sizes_from_dir`), from ``image_size`` (one size for all), or from
:data:`DEFAULT_IMAGE_SIZES` by ``dataset`` -- FAST 600, SIOR 800, SOTA 1,024 px square, the
sizes TEOChat's ``geochat_bench.py`` assumes. Those defaults are an inference: they fit the
coordinate ranges and reproduce GeoChat-Bench's own region boxes from the quads
(kdlib/boxes.py), but no source states them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image
from shapely.geometry import Polygon

from kdlib.boxes import box_polygon, parse_geochat_boxes, quad_polygon, rotated_iou
from kdlib.data.geochat_bench import ReferringAnswer

THRESHOLDS = (0.5, 0.25)
DEFAULT_IMAGE_SIZES = {"FAST": 600, "SIOR": 800, "SOTA": 1024}
"""Assumed square patch size (pixels) per GeoChat-Bench source dataset (an inference)."""


def greedy_matches(gt: Sequence[Polygon], pred: Sequence[Polygon], threshold: float) -> int:
    """Number of one-to-one (ground truth, prediction) pairs with ``IoU > threshold``,
    chosen greedily by decreasing IoU."""
    pairs = sorted(((rotated_iou(g, p), i, j) for i, g in enumerate(gt) for j, p in enumerate(pred)),
                   key=lambda pair: -pair[0])
    used_gt: set[int] = set()
    used_pred: set[int] = set()
    for iou, i, j in pairs:
        if iou <= threshold:
            break
        if i not in used_gt and j not in used_pred:
            used_gt.add(i)
            used_pred.add(j)
    return len(used_gt)


def image_size_of(record: ReferringAnswer, image_size: int | None = None,
                  image_sizes: Mapping[str, tuple[int, int]] | None = None) -> tuple[int, int]:
    """``(width, height)`` of the record's image (order of precedence in the module docstring)."""
    if image_sizes is not None and record.image_id in image_sizes:
        return image_sizes[record.image_id]
    if image_size is not None:
        return image_size, image_size
    if record.dataset in DEFAULT_IMAGE_SIZES:
        size = DEFAULT_IMAGE_SIZES[record.dataset]
        return size, size
    raise ValueError(f"{record.question_id}: no image size for dataset {record.dataset!r} "
                     f"(known: {', '.join(DEFAULT_IMAGE_SIZES)}); give an image size or the images")


def image_sizes_from_dir(folder: str | Path, image_ids: Sequence[str],
                         suffix: str = ".png") -> dict[str, tuple[int, int]]:
    """``{image_id: (width, height)}`` read from ``folder/<image_id><suffix>`` (headers only)."""
    sizes = {}
    for image_id in sorted(set(image_ids)):
        path = Path(folder) / f"{image_id}{suffix}"
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        with Image.open(path) as image:
            sizes[image_id] = image.size
    return sizes


def record_hits(record: ReferringAnswer, size: tuple[int, int]) -> dict[float, int]:
    """``{threshold: TP}`` for one answer at each of :data:`THRESHOLDS`."""
    width, height = size
    pred = [box_polygon(box, width, height) for box in parse_geochat_boxes(record.answer)]
    gt = [quad_polygon(quad) for quad in record.ground_truth]
    return {t: greedy_matches(gt, pred, t) for t in THRESHOLDS}


def grounding_metrics(records: Sequence[ReferringAnswer], image_size: int | None = None,
                      image_sizes: Mapping[str, tuple[int, int]] | None = None) -> dict[str, object]:
    """``{"acc@0.5", "acc@0.25", "per_type", "per_size_group", "n", "n_boxes", "n_unparsable"}`` in percent.

    ``per_type`` / ``per_size_group`` map each group to ``{"acc@0.5", "acc@0.25", "n",
    "n_boxes"}``; ``n_unparsable`` counts the answers with no readable box (scored as misses).
    Raises ``ValueError`` for an empty list.
    """
    if not records:
        raise ValueError("no referring answers to score")
    totals: dict[tuple[str, str], dict[str, float]] = {}
    for record in records:
        hits = record_hits(record, image_size_of(record, image_size, image_sizes))
        for key in (("all", ""), ("type", record.type), ("size_group", record.size_group)):
            group = totals.setdefault(key, {"n": 0, "n_boxes": 0, **{t: 0 for t in THRESHOLDS}})
            group["n"] += 1
            group["n_boxes"] += len(record.ground_truth)
            for t in THRESHOLDS:
                group[t] += hits[t]
    summary = {key: _accuracy(group) for key, group in totals.items()}
    return {**summary["all", ""], "n_unparsable": sum(not parse_geochat_boxes(r.answer) for r in records),
            "per_type": {name: s for (kind, name), s in summary.items() if kind == "type"},
            "per_size_group": {name: s for (kind, name), s in summary.items() if kind == "size_group"}}


def _accuracy(group: Mapping[str | float, float]) -> dict[str, float | int]:
    n_boxes = int(group["n_boxes"])
    return {**{f"acc@{t}": 100.0 * group[t] / n_boxes for t in THRESHOLDS},
            "n": int(group["n"]), "n_boxes": n_boxes}
