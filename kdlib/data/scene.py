"""Scene classification readers: UCMerced Land Use (21 classes) and AID (30 classes).

Layout (``docs/data.md`` §1-2): ``<root>/ucmerced/<class>/<class>NN.jpg`` and
``<root>/aid/<Class>/<class>_<n>.jpg``, each with ``classes.txt`` (folder names, label order).

Answers are the class names as GeoChat-Bench's ``ground_truth`` writes them: UCMerced lower
case with spaces ("dense residential", "mobile home park"; :data:`UCM_SPACED`, checked against
``UCmerced_geochat_7b.jsonl``), AID capitalised words split at the capitals ("Bare Land",
"Railway Station"; :func:`aid_spaced`, checked against ``AID_geochat_7b.jsonl``).
Each record: ``question`` = :func:`kdlib.data.prompts.scene_query` over the dataset's classes,
``meta`` = ``dataset``, ``label`` (index in ``classes.txt``), ``class_dir`` (folder name).
"""

from __future__ import annotations

import re
from pathlib import Path

from kdlib.data.prompts import scene_query
from kdlib.data.records import Record, check_image, data_error, read_json, read_lines

UCM_SPACED = {
    "agricultural": "agricultural", "airplane": "airplane", "baseballdiamond": "baseball diamond",
    "beach": "beach", "buildings": "buildings", "chaparral": "chaparral",
    "denseresidential": "dense residential", "forest": "forest", "freeway": "freeway",
    "golfcourse": "golf course", "harbor": "harbor", "intersection": "intersection",
    "mediumresidential": "medium residential", "mobilehomepark": "mobile home park",
    "overpass": "overpass", "parkinglot": "parking lot", "river": "river", "runway": "runway",
    "sparseresidential": "sparse residential", "storagetanks": "storage tanks", "tenniscourt": "tennis court",
}
"""UCMerced folder name -> GeoChat-Bench class name (all 21 classes)."""

_AID_CLASS = re.compile(r"^(?:[A-Z][a-z]+)+$")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


def aid_spaced(folder: str) -> str:
    """AID folder -> GeoChat-Bench class name: split before each capital (``BareLand`` -> ``Bare Land``)."""
    if not _AID_CLASS.match(folder):
        raise ValueError(f"AID class folder {folder!r} is not written in capitalised words (e.g. BareLand)")
    return re.sub(r"(?<!^)(?=[A-Z])", " ", folder)


def read_classes(path: Path, spaced) -> list[tuple[str, str]]:
    """``classes.txt`` as ``[(folder, spaced name)]`` in label order; unknown or repeated names raise."""
    pairs: list[tuple[str, str]] = []
    for n, line in enumerate(read_lines(path), start=1):
        folder = line.strip()
        if not folder:
            continue
        try:
            name = spaced(folder)
        except (KeyError, ValueError) as err:
            raise data_error(path, f"line {n}", f"unknown class {folder!r}") from err
        if any(folder == f for f, _ in pairs):
            raise data_error(path, f"line {n}", f"class {folder!r} is listed twice")
        pairs.append((folder, name))
    if not pairs:
        raise data_error(path, "", "no classes listed")
    return pairs


def _read_scene(folder: Path, dataset: str, spaced, check_images: bool) -> list[Record]:
    classes_txt = folder / "classes.txt"
    classes = read_classes(classes_txt, spaced)
    listed = {f for f, _ in classes}
    extra = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in listed) if folder.is_dir() else []
    if extra:
        raise data_error(folder / extra[0], "", f"unknown class folder {extra[0]!r} (not in {classes_txt})")
    query = scene_query([name for _, name in classes])
    records = []
    for label, (class_dir, name) in enumerate(classes):
        files = sorted(p for p in (folder / class_dir).glob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not files:
            raise data_error(classes_txt, f"class {class_dir!r}", f"folder {folder / class_dir} has no images")
        for path in files:
            if check_images:
                check_image(path, folder / class_dir, f"file {path.name}")
            records.append(Record(
                id=f"{dataset}/{class_dir}/{path.stem}", task="scene", image=path.resolve(), question=query,
                answer=name, meta={"dataset": dataset, "label": label, "class_dir": class_dir},
            ))
    return records


def read_ucmerced(root: Path | str, check_images: bool = True) -> list[Record]:
    """All UCMerced images (``<root>/ucmerced``) as scene records, folders in ``classes.txt`` order."""
    return _read_scene(Path(root) / "ucmerced", "ucmerced", UCM_SPACED.__getitem__, check_images)


def read_aid(root: Path | str, check_images: bool = True) -> list[Record]:
    """All AID images (``<root>/aid``) as scene records, folders in ``classes.txt`` order."""
    return _read_scene(Path(root) / "aid", "aid", aid_spaced, check_images)


def class_names(records: list[Record]) -> tuple[str, ...]:
    """The spaced class names of one scene dataset's records, in label order."""
    names: dict[int, str] = {}
    for rec in records:
        names.setdefault(rec.meta["label"], rec.answer)
    return tuple(names[i] for i in sorted(names))


def read_ucm_numbered(root: Path | str) -> dict[str, Path]:
    """``ucmerced/ucm_numbered_filenames.json``: ``"<k>.tif"`` -> absolute UCMerced image path.

    UCM-captions and RSIVQA name the UCMerced images ``1.tif`` ... ``2100.tif`` (``docs/data.md`` §1).
    """
    path = Path(root) / "ucmerced" / "ucm_numbered_filenames.json"
    table = read_json(path)
    if not isinstance(table, dict):
        raise data_error(path, "", "expected an object {\"<k>.tif\": \"<class>/<file>.jpg\"}")
    base = (Path(root) / "ucmerced").resolve()
    out = {}
    for key, rel in table.items():
        if not isinstance(rel, str) or not rel:
            raise data_error(path, f"key {key!r}", f"expected a relative image path, got {rel!r}")
        out[key] = base / rel
    return out


def ucm_image(numbered: dict[str, Path], name: str, source: Path, where: str) -> Path:
    """The UCMerced image for a numbered name (``"17.tif"``), or :class:`DataError` naming ``source``."""
    try:
        return numbered[name]
    except KeyError:
        raise data_error(source, where, f"image {name!r} is not in ucm_numbered_filenames.json") from None

