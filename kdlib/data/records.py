"""One labelled sample of the study (:class:`Record`), the error every reader raises, file helpers.

A :class:`Record` is one (image, question, answer) triple of one task. ``question`` is the text
the model sees after ``<image>\\n`` (already in GeoChat's prompt form, see
:mod:`kdlib.data.prompts`), ``answer`` the reference answer. Readers keep everything else that
a metric or a split needs in ``meta`` (``dataset`` always; ``label``, ``type``, ``references``,
``objects``, ``crop`` ... where they apply).

Readers are all-or-nothing: the first malformed line, unknown class or unreadable image raises
:class:`DataError` whose message names the file, the line or key, and the problem.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

TASKS = ("scene", "vqa", "caption", "refer", "grounding", "region_caption")
"""The six tasks of GeoChat-Bench that the study covers."""

_JPEG_END = b"\xff\xd9"


class DataError(ValueError):
    """Malformed input data; the message names the file and the line / key and the problem."""


def data_error(path: Path | str, where: str, problem: str) -> DataError:
    """``DataError("<path>: <where>: <problem>")``; ``where`` is e.g. ``line 12`` or ``key 'images'``."""
    return DataError(f"{path}: {where}: {problem}" if where else f"{path}: {problem}")


@dataclass(frozen=True)
class Record:
    """One sample: ``image`` (absolute path, or None for text-only), prompt text, reference answer."""

    id: str
    task: str
    image: Path | None
    question: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a Record needs a non-empty id")
        if self.task not in TASKS:
            raise ValueError(f"record {self.id}: unknown task {self.task!r}; choose one of {TASKS}")

    @property
    def dataset(self) -> str:
        """The source dataset (``meta["dataset"]``), e.g. ``ucmerced`` or ``rsvqa_lr``."""
        return str(self.meta.get("dataset", ""))

    @property
    def image_key(self) -> str:
        """What identifies the picture the model sees: the file, plus the crop box for tiles.

        Splits group records by this key so that no picture is in two splits.
        """
        crop = self.meta.get("crop")
        return f"{self.image}#{','.join(map(str, crop))}" if crop else str(self.image)


def records_digest(records: Sequence[Record]) -> str:
    """sha256 of the records' ids in order: which records a run trained on or a result answered."""
    return hashlib.sha256("\n".join(r.id for r in records).encode()).hexdigest()


def load_image(record: Record) -> Image.Image:
    """The record's picture as an RGB PIL image, cropped to ``meta["crop"]`` (left, top, right, bottom).

    A missing file raises ``FileNotFoundError``, any failure to read or decode the pixels (a truncated
    or corrupt file) :class:`DataError`; both name the image file and the record.
    """
    if record.image is None:
        raise ValueError(f"record {record.id} has no image")
    if not record.image.is_file():
        raise FileNotFoundError(f"{record.image}: record {record.id}: the image does not exist")
    try:
        with Image.open(record.image) as img:
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise data_error(record.image, f"record {record.id}", f"the image cannot be decoded ({err})") from err
    crop = record.meta.get("crop")
    return rgb.crop(tuple(crop)) if crop else rgb


def check_image(path: Path, source: Path | str, where: str) -> None:
    """Raise :class:`DataError` (naming ``source`` and ``where``) unless ``path`` is a readable image.

    Cheap: ``PIL.Image.verify`` (header and, for PNG, chunk checksums) plus, for JPEG, the
    end-of-image marker, which catches truncated files without decoding the pixels.
    """
    if not path.is_file():
        raise data_error(source, where, f"image {path} does not exist")
    try:
        with Image.open(path) as img:
            fmt = img.format
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise data_error(source, where, f"image {path} is not a readable image ({err})") from err
    if fmt == "JPEG":
        with path.open("rb") as fh:
            fh.seek(-2, 2)
            if fh.read(2) != _JPEG_END:
                raise data_error(source, where, f"image {path} is a truncated JPEG (no end-of-image marker)")


def check_record_images(records: list[Record]) -> None:
    """:func:`check_image` on every distinct image of ``records`` (each file once)."""
    seen: set[Path] = set()
    for rec in records:
        if rec.image is not None and rec.image not in seen:
            seen.add(rec.image)
            check_image(rec.image, rec.meta.get("source", rec.image), f"record {rec.id}")


def decode_record_images(records: list[Record]) -> None:
    """Decode every distinct image of ``records`` in full (:func:`load_image`), so that a corrupt file
    stops a long run before its first step, named, rather than hours into it."""
    seen: set[Path] = set()
    for rec in records:
        if rec.image is not None and rec.image not in seen:
            seen.add(rec.image)
            load_image(rec)


def read_json(path: Path) -> Any:
    """Parse a JSON file; a missing file or a syntax error raises :class:`DataError` with the line."""
    if not path.is_file():
        raise data_error(path, "", "file does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise data_error(path, f"line {err.lineno} column {err.colno}", f"malformed JSON ({err.msg})") from err
    except UnicodeDecodeError as err:
        raise data_error(path, f"byte {err.start}", "not UTF-8 text") from err


def read_lines(path: Path) -> list[str]:
    """The lines of a text file without line endings (``\\n`` or ``\\r\\n``); errors name the file."""
    if not path.is_file():
        raise data_error(path, "", "file does not exist")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise data_error(path, f"byte {err.start}", "not UTF-8 text") from err


def require_key(obj: Any, key: str, path: Path, where: str) -> Any:
    """``obj[key]``, or :class:`DataError` naming the file, the entry and the missing key."""
    if not isinstance(obj, dict) or key not in obj:
        raise data_error(path, where, f"missing key {key!r}")
    return obj[key]


def typed_key(obj: Any, key: str, kinds: type | tuple[type, ...], path: Path, where: str) -> Any:
    """``obj[key]`` when it is of one of ``kinds`` (a bool is never an int), else :class:`DataError`
    naming the file, the entry, the key, the expected and the found type."""
    value = require_key(obj, key, path, where)
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise data_error(path, where, f"key {key!r} must be {expected}, got {type(value).__name__} {value!r:.60}")
    return value
