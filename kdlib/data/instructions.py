"""GeoChat instruction records: conversion from kdlib Records and the GeoChat_Instruct loader.

GeoChat trains on ``GeoChat_Instruct.json``, a list of LLaVA-style records::

    {"id": ..., "image": "<file>", "conversations": [
        {"from": "human", "value": "<image>\\n<query>"}, {"from": "gpt", "value": "<answer>"}, ...]}

That file is not available offline (``docs/data.md``, "What is not available"). :func:`to_conversation` writes the same
structure from kdlib :class:`Record` s built on real annotations (UCMerced / AID labels, RSVQA,
RSIVQA, UCM-captions, DOTA boxes) and marks every record with a ``source`` field saying it is a
kdlib conversion. :func:`load_geochat_instruct` reads the real file for users who have it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdlib.data.prompts import IMAGE_TOKEN, human_value
from kdlib.data.records import Record, data_error, read_json
from kdlib.files import write_json

CONVERSION = "kdlib conversion of {dataset} annotations (not a GeoChat_Instruct record)"


def to_conversation(record: Record) -> dict[str, Any]:
    """One Record as a GeoChat conversation record with ``source``, ``task`` (and ``crop`` for tiles).

    ``image`` is the absolute image path as a string; ``crop`` (left, top, right, bottom) is kept
    for DOTA tiles so the picture can be rebuilt.
    """
    conv: dict[str, Any] = {
        "id": record.id,
        "image": None if record.image is None else str(record.image),
        "conversations": [
            {"from": "human", "value": human_value(record.question) if record.image else record.question},
            {"from": "gpt", "value": record.answer},
        ],
        "task": record.task,
        "source": CONVERSION.format(dataset=record.dataset or "unknown"),
    }
    if record.meta.get("crop"):
        conv["crop"] = list(record.meta["crop"])
    return conv


def save_conversations(records: list[Record], path: Path | str) -> Path:
    """Write :func:`to_conversation` of every record as one JSON list, atomically (temp + rename)."""
    return write_json(path, [to_conversation(r) for r in records], indent=1, sort_keys=False)


def _check_message(msg: Any, expected: str, path: Path, where: str) -> str:
    if not isinstance(msg, dict):
        raise data_error(path, where, f"expected an object with 'from' and 'value', got {type(msg).__name__}")
    for key in ("from", "value"):
        if key not in msg:
            raise data_error(path, where, f"missing key {key!r}")
    if msg["from"] != expected:
        raise data_error(path, f"{where} key 'from'", f"expected {expected!r}, got {msg['from']!r}")
    if not isinstance(msg["value"], str):
        raise data_error(path, f"{where} key 'value'", "expected a string")
    return msg["value"]


def check_conversation(item: Any, path: Path, where: str) -> dict[str, Any]:
    """Validate one GeoChat record; :class:`DataError` names the file, the index and the key.

    Rules: an object with ``id`` and a non-empty ``conversations`` list alternating
    human / gpt and ending with gpt; ``image`` (optional) a string; ``<image>`` appears exactly
    once, in the first human message, iff the record has an image.
    """
    if not isinstance(item, dict):
        raise data_error(path, where, f"expected an object, got {type(item).__name__}")
    for key in ("id", "conversations"):
        if key not in item:
            raise data_error(path, where, f"missing key {key!r}")
    turns = item["conversations"]
    if not isinstance(turns, list) or len(turns) < 2 or len(turns) % 2:
        raise data_error(path, f"{where} key 'conversations'", "expected an even, non-empty list of messages")
    values = [_check_message(m, "human" if j % 2 == 0 else "gpt", path, f"{where}.conversations[{j}]")
              for j, m in enumerate(turns)]
    image = item.get("image")
    if image is not None and not isinstance(image, str):
        raise data_error(path, f"{where} key 'image'", "expected a file name")
    placeholders = sum(v.count(IMAGE_TOKEN) for v in values)
    wanted = 1 if image else 0
    if placeholders != wanted or (wanted and IMAGE_TOKEN not in values[0]):
        raise data_error(path, f"{where} key 'conversations'",
                         f"{IMAGE_TOKEN} appears {placeholders} times; expected {wanted}"
                         + (" (in the first human message)" if wanted else ""))
    return item


def load_geochat_instruct(path: Path | str, image_root: Path | str | None = None,
                          check_files: bool = False) -> list[dict[str, Any]]:
    """The records of a GeoChat_Instruct-style JSON list, validated (:func:`check_conversation`).

    ``image_root`` given: each ``image`` becomes ``str(image_root / image)``; with
    ``check_files`` a missing image file raises :class:`DataError` naming the index.
    """
    path = Path(path)
    items = read_json(path)
    if not isinstance(items, list):
        raise data_error(path, "top level", "expected a list of conversation records")
    out = []
    for i, item in enumerate(items):
        record = dict(check_conversation(item, path, f"index {i}"))
        if image_root is not None and record.get("image"):
            image = Path(image_root) / record["image"]
            if check_files and not image.is_file():
                raise data_error(path, f"index {i} key 'image'", f"image {image} does not exist")
            record["image"] = str(image)
        out.append(record)
    return out

