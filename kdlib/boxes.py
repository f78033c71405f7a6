"""GeoChat oriented boxes: the ``{<x1><y1><x2><y2>|<theta>}`` text form, pixel quads and IoU.

GeoChat (core paper Eq. 11; ``geochat_demo.py``) writes an oriented box as the axis-aligned
box ``x1 <= x2, y1 <= y2`` of the *unrotated* rectangle on a 0-100 grid (percent of image
width / height, integers) plus an angle ``theta`` in degrees. The rectangle is rotated about its
centre by ``theta``:

    corner' = centre + R(theta) (corner - centre),  R = [[cos, -sin], [sin, cos]]

applied in image coordinates (x right, y *down*), so a positive angle turns the width side
towards +y (clockwise on screen). This is the rotation of GeoChat's
``bbox_and_angle_to_polygon`` and TEOChat's ``convert_geochat_string``; the demo's drawing
code uses ``cv2.getRotationMatrix2D``, the mirror image. The convention was checked on the
GeoChat-Bench files (tests/test_boxes.py): the region-caption question boxes are the referring
ground-truth quads of the same objects written this way; :func:`quad_to_geochat_box` gives 99 %
of them character for character (SIOR at 800 px, SOTA at 1,024 px; the rest are one grid unit
or a few degrees off), and rebuilt with this rotation they overlap the quads better than with
the mirror rotation (mean IoU 0.88 vs 0.65 on SIOR).

Angles in GeoChat-Bench lie in ``[0, 90]`` with ``90`` for axis-aligned objects: the
convention of OpenCV's ``minAreaRect`` (>= 4.5.1), where ``theta`` is the direction of the
``w`` side, in ``(0, 90]``. :func:`quad_to_rbox` reproduces it without OpenCV.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from shapely.geometry import MultiPoint, Polygon

GRID = 100
"""GeoChat's coordinate grid: box coordinates are percent of the image width / height."""

Quad = Sequence[Sequence[float]]
"""Four ``(x, y)`` corners (pixels), in any order around the shape."""

_NUMBER = r"\s*<\s*(-?\d+(?:\.\d+)?)\s*>\s*"
_BOX_RE = re.compile(r"^" + _NUMBER * 4 + r"(?:\|" + _NUMBER + r")?$")
_SEGMENT_RE = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class GeoBox:
    """One GeoChat box on the 0-100 grid: unrotated corners and the angle in degrees."""

    x1: float
    y1: float
    x2: float
    y2: float
    theta: float = 0.0

    def __post_init__(self) -> None:
        _check_finite((self.x1, self.y1, self.x2, self.y2, self.theta))

    def to_text(self) -> str:
        """The box as GeoChat writes it, e.g. ``{<10><20><30><40>|<90>}``."""
        return format_geochat_box(self.x1, self.y1, self.x2, self.y2, self.theta)


def format_geochat_box(x1: float, y1: float, x2: float, y2: float, theta: float = 0.0) -> str:
    """Write ``{<x1><y1><x2><y2>|<theta>}`` with every value rounded to an integer.

    Coordinates are percent of the image width (x) / height (y); ``theta`` is in degrees.
    Corners are ordered so that ``x1 <= x2`` and ``y1 <= y2``. Values are not clipped to
    ``[0, 100]``: the unrotated rectangle of a rotated object at the border pokes out of the
    image, and GeoChat-Bench writes such boxes as they are (e.g. ``<-1>``).
    """
    _check_finite((x1, y1, x2, y2, theta))
    xa, xb = sorted((x1, x2))
    ya, yb = sorted((y1, y2))
    grid = [round(v) for v in (xa, ya, xb, yb)]
    return "{" + "".join(f"<{v}>" for v in grid) + f"|<{round(theta)}>" + "}"


def quad_to_rbox(quad: Quad) -> tuple[float, float, float, float, float]:
    """Minimum-area rectangle of a quad as ``(cx, cy, w, h, theta_deg)``, ``theta`` in (0, 90].

    ``w`` is the side whose direction ``(cos theta, sin theta)`` (y down) has an angle in
    ``(0, 90]``; ``h`` the other side. Axis-aligned boxes get ``theta = 90`` with ``w`` the
    vertical extent (OpenCV ``minAreaRect`` >= 4.5.1). Units are the quad's (pixels).
    """
    points = _check_quad(quad)
    rect = MultiPoint(points).minimum_rotated_rectangle
    if not isinstance(rect, Polygon) or rect.area <= 0:
        raise ValueError(f"degenerate quad (zero area): {points}")
    corners = list(rect.exterior.coords)[:4]
    cx = sum(p[0] for p in corners) / 4
    cy = sum(p[1] for p in corners) / 4
    side_a = (corners[1][0] - corners[0][0], corners[1][1] - corners[0][1])
    side_b = (corners[2][0] - corners[1][0], corners[2][1] - corners[1][1])
    angle = round(math.degrees(math.atan2(side_a[1], side_a[0])), 6) % 180.0
    if 0.0 < angle <= 90.0:
        w_side, h_side, theta = side_a, side_b, angle
    else:
        w_side, h_side, theta = side_b, side_a, (angle + 90.0) % 180.0
    return cx, cy, math.hypot(*w_side), math.hypot(*h_side), theta


def rbox_to_quad(cx: float, cy: float, w: float, h: float, theta_deg: float) -> list[tuple[float, float]]:
    """Corners of the ``w x h`` rectangle centred on ``(cx, cy)`` rotated by ``theta_deg``.

    ``corner = (cx, cy) + R(theta) (+-w/2, +-h/2)`` with ``R = [[cos, -sin], [sin, cos]]`` in
    image coordinates (y down); the inverse of :func:`quad_to_rbox` up to corner order.
    """
    cos_t, sin_t = math.cos(math.radians(theta_deg)), math.sin(math.radians(theta_deg))
    offsets = ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2))
    return [(cx + dx * cos_t - dy * sin_t, cy + dx * sin_t + dy * cos_t) for dx, dy in offsets]


def quad_to_geobox(quad: Quad, width: float, height: float) -> GeoBox:
    """A pixel quad of a ``width x height`` image as a GeoChat box on the 0-100 grid (unrounded).

    ``x = 100 cx / width +- 100 w / (2 width)``, ``y = 100 cy / height +- 100 h / (2 height)``,
    ``theta`` from :func:`quad_to_rbox`. Exact for square images (all GeoChat-Bench patches);
    for other aspect ratios the angle is kept as measured in pixels.
    """
    _check_size(width, height)
    cx, cy, w, h, theta = quad_to_rbox(quad)
    sx, sy = GRID / width, GRID / height
    return GeoBox(sx * (cx - w / 2), sy * (cy - h / 2), sx * (cx + w / 2), sy * (cy + h / 2), theta)


def quad_to_geochat_box(quad: Quad, width: float, height: float) -> str:
    """A pixel quad of a ``width x height`` image as GeoChat box text (:func:`quad_to_geobox`)."""
    return quad_to_geobox(quad, width, height).to_text()


def on_grid(box: GeoBox) -> bool:
    """Whether the box as written (corners rounded to integers) lies on the grid, ``0 <= x, y <= 100``.

    A rotated object inside the image can fail: its *unrotated* rectangle may poke out (a thin object
    at ``theta`` near 90 along the left border writes ``<-3>``)."""
    return all(0 <= round(v) <= GRID for v in (box.x1, box.y1, box.x2, box.y2))


def parse_geochat_boxes(text: str, strict: bool = False) -> list[GeoBox]:
    """Every ``{<x1><y1><x2><y2>|<theta>}`` box in ``text``, in order of appearance.

    Tolerates surrounding text (``<p>plane</p>{...}``), several boxes written ``}{`` (or with
    the demo's ``}<delim>{``), a truncated last box (dropped), a missing
    ``|<theta>`` (``theta = 0``) and spaces inside. With ``strict=False`` malformed segments
    (wrong number of values, an unclosed ``{``) are skipped; with ``strict=True`` they raise
    ``ValueError`` naming the segment and the problem. Values slightly outside ``[0, 100]``
    are kept: GeoChat-Bench's own boxes of rotated objects at the border have them (``<-1>``).
    """
    boxes = []
    for segment in _SEGMENT_RE.findall(text):
        match = _BOX_RE.match(segment)
        if match is None:
            if strict:
                raise ValueError(f"bad box {{{segment}}}: expected <x1><y1><x2><y2> with optional |<theta>")
            continue
        x1, y1, x2, y2 = (float(v) for v in match.groups()[:4])
        theta = float(match.group(5)) if match.group(5) is not None else 0.0
        boxes.append(GeoBox(x1, y1, x2, y2, theta))
    if strict and text.count("{") != text.count("}"):
        raise ValueError(f"unbalanced braces in box text {text!r}")
    return boxes


def box_polygon(box: GeoBox, width: float, height: float) -> Polygon:
    """Pixel polygon of a grid box in a ``width x height`` image.

    The unrotated corners are scaled to pixels (``x * width / 100``, ``y * height / 100``) and
    rotated about their centre by ``theta`` in pixel space (:func:`rbox_to_quad`).
    """
    _check_size(width, height)
    sx, sy = width / GRID, height / GRID
    cx, cy = sx * (box.x1 + box.x2) / 2, sy * (box.y1 + box.y2) / 2
    w, h = sx * abs(box.x2 - box.x1), sy * abs(box.y2 - box.y1)
    return Polygon(rbox_to_quad(cx, cy, w, h, box.theta))


def quad_polygon(quad: Quad) -> Polygon:
    """Polygon of a ground-truth pixel quad: the convex hull of its corners.

    The hull makes the polygon independent of corner order (a quad listed as a bow-tie still
    gives the intended rectangle); DOTA / DIOR / FAIR1M quads are convex.
    """
    hull = MultiPoint(_check_quad(quad)).convex_hull
    return hull if isinstance(hull, Polygon) else Polygon()


def rotated_iou(a: Polygon, b: Polygon) -> float:
    """Intersection over union of two polygons, ``|a & b| / |a | b|``; 0 when both are empty."""
    union = a.union(b).area
    return a.intersection(b).area / union if union > 0 else 0.0


def _check_finite(values: Sequence[float]) -> None:
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"box values must be finite, got {tuple(values)}")


def _check_quad(quad: Quad) -> list[tuple[float, float]]:
    if len(quad) != 4 or any(len(p) != 2 for p in quad):
        raise ValueError(f"a quad is 4 [x, y] corners, got {quad!r}")
    points = [(float(x), float(y)) for x, y in quad]
    if not all(math.isfinite(v) for p in points for v in p):
        raise ValueError(f"quad corners must be finite, got {quad!r}")
    return points


def _check_size(width: float, height: float) -> None:
    if not (width > 0 and height > 0):
        raise ValueError(f"image size must be positive, got {width} x {height}")
