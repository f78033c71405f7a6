"""DOTA-v1.0 oriented-box reader (the two DOTA devkit examples, ``docs/data.md`` §7).

``<root>/grounding/dota_devkit_example/labelTxt/<stem>.txt`` (CRLF): optional header lines
``imagesource:...`` and ``gsd:...``, then one object per line
``x1 y1 x2 y2 x3 y3 x4 y4 <category> <difficult 0|1>`` (pixel corners, clockwise); the image is
``images/<stem>.png``.

:func:`read_dota` returns one *annotation* record per image (task ``grounding``, empty
``question`` / ``answer``): the objects are in ``meta["objects"]`` with ``meta["width"]``,
``meta["height"]``, ``meta["gsd"]``. :mod:`kdlib.data.regions` turns them into referring,
grounding and region-caption prompts on image tiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from kdlib.data.records import Record, check_image, data_error, read_lines

DOTA_DIR = Path("grounding") / "dota_devkit_example"
DOTA_CATEGORIES = (
    "plane", "ship", "storage-tank", "baseball-diamond", "tennis-court", "basketball-court",
    "ground-track-field", "harbor", "bridge", "large-vehicle", "small-vehicle", "helicopter",
    "roundabout", "soccer-ball-field", "swimming-pool", "container-crane", "airport", "helipad",
)
"""DOTA-v1.0's 15 categories, v1.5's container-crane and v2.0's airport and helipad."""


@dataclass(frozen=True)
class DotaObject:
    """One oriented object: four pixel corners, its category and the ``difficult`` flag."""

    quad: tuple[tuple[float, float], ...]
    category: str
    difficult: bool

    @property
    def centre(self) -> tuple[float, float]:
        """Mean of the four corners (pixels)."""
        return sum(p[0] for p in self.quad) / 4, sum(p[1] for p in self.quad) / 4


def parse_dota_line(line: str, path: Path, n: int) -> DotaObject:
    """One ``x1 y1 ... x4 y4 category difficult`` line; :class:`DataError` names file and line."""
    parts = line.split()
    if len(parts) not in (9, 10):
        raise data_error(path, f"line {n}", f"expected 8 coordinates, a category and a difficult flag, got {line!r}")
    try:
        coords = [float(v) for v in parts[:8]]
    except ValueError:
        raise data_error(path, f"line {n}", f"box coordinates are not numbers: {' '.join(parts[:8])!r}") from None
    category = parts[8]
    if category not in DOTA_CATEGORIES:
        raise data_error(path, f"line {n}", f"unknown category {category!r}")
    difficult = parts[9] if len(parts) == 10 else "0"
    if difficult not in ("0", "1"):
        raise data_error(path, f"line {n}", f"difficult flag must be 0 or 1, got {difficult!r}")
    quad = tuple((coords[i], coords[i + 1]) for i in range(0, 8, 2))
    return DotaObject(quad=quad, category=category, difficult=difficult == "1")


def read_dota_labels(path: Path) -> tuple[dict[str, str], list[DotaObject]]:
    """A ``labelTxt`` file as ``(header, objects)``; header keys ``imagesource`` and ``gsd``."""
    header: dict[str, str] = {}
    objects = []
    for n, line in enumerate(read_lines(path), start=1):
        line = line.strip()
        key, colon, value = line.partition(":")
        if not line:
            continue
        if colon and key in ("imagesource", "gsd"):
            header[key] = value.strip()
        else:
            objects.append(parse_dota_line(line, path, n))
    return header, objects


def read_dota(root: Path | str, check_images: bool = True) -> list[Record]:
    """One annotation record per labelled image under ``<root>/grounding/dota_devkit_example``."""
    folder = Path(root) / DOTA_DIR
    labels = sorted((folder / "labelTxt").glob("*.txt"))
    if not labels:
        raise data_error(folder / "labelTxt", "", "no label files (*.txt)")
    records = []
    for path in labels:
        header, objects = read_dota_labels(path)
        image = (folder / "images" / f"{path.stem}.png").resolve()
        if check_images:
            check_image(image, path, "image")
        elif not image.is_file():
            raise data_error(path, "image", f"image {image} does not exist")
        with Image.open(image) as img:
            width, height = img.size
        try:
            gsd = float(header["gsd"]) if "gsd" in header else None
        except ValueError:
            raise data_error(path, "header gsd", f"not a number: {header['gsd']!r}") from None
        records.append(Record(
            id=f"dota/{path.stem}", task="grounding", image=image, question="", answer="",
            meta={"dataset": "dota", "objects": tuple(objects), "width": width, "height": height,
                  "gsd": gsd, "imagesource": header.get("imagesource"), "source": str(path)},
        ))
    return records
