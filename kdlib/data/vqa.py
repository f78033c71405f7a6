"""VQA readers: RSVQA (LR / HR, official JSON schema) and RSIVQA's UCMerced part.

RSVQA (``docs/data.md`` §3-4): ``<root>/rsvqa_{lr,hr}/`` holds ``{prefix}_questions.json``,
``_answers.json``, ``_images.json`` and ``images/<img_id>.png`` (``.tif`` in the Zenodo release).
Join: answer = answers-by-id[``answers_ids``][0], image = ``images/{img_id}``; only ``active``
questions, answers and images are kept. Types: LR presence / comp / rural_urban / count, HR
presence / comp / count / area.

RSIVQA-UCM (``docs/data.md`` §6): ``<root>/rsivqa_ucm/ucm_vqa.txt`` and ``ucm_res.txt``, one
``<k>.tif:<question>?<answer>`` per line; images through ``ucm_numbered_filenames.json``.
Types from the question's wording: theme, presence, count, location. Questions whose object
is empty in the source ("how many  in the picture?") are kept and flagged ``meta["empty_object"]``.

Every record's ``question`` is :func:`kdlib.data.prompts.vqa_query` of the source question;
``meta`` has ``dataset``, ``type``, ``raw_question`` and the source ids.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kdlib.data.prompts import vqa_query
from kdlib.data.records import Record, check_image, data_error, read_json, read_lines, require_key
from kdlib.data.scene import read_ucm_numbered, ucm_image

RSVQA_TYPES = {
    "lr": ("presence", "comp", "rural_urban", "count"),
    "hr": ("presence", "comp", "count", "area"),
}
_RSVQA_PREFIX = {"lr": "LR_split", "hr": "USGS_split"}

RSIVQA_FILES = ("ucm_vqa.txt", "ucm_res.txt")
_RSIVQA_TYPES = (
    ("theme", re.compile(r"^what is the theme of this picture$", re.I)),
    ("presence", re.compile(r"^does this picture contain\b", re.I)),
    ("count", re.compile(r"^how many\b", re.I)),
    ("location", re.compile(r"^what is the location of\b", re.I)),
)
RSIVQA_TYPES = tuple(name for name, _ in _RSIVQA_TYPES)


def _table(path: Path, key: str) -> dict[int, dict[str, Any]]:
    """One RSVQA JSON file (``{key: [entries]}``) as ``{id: entry}``; bad entries raise."""
    entries = require_key(read_json(path), key, path, "top level")
    if not isinstance(entries, list):
        raise data_error(path, f"key {key!r}", "expected a list")
    table = {}
    for i, entry in enumerate(entries):
        where = f"{key}[{i}]"
        ident = require_key(entry, "id", path, where)
        require_key(entry, "active", path, where)
        if ident in table:
            raise data_error(path, where, f"id {ident} repeated")
        table[ident] = entry
    return table


def _rsvqa_image(folder: Path, img_id: Any) -> Path:
    for suffix in (".png", ".tif"):
        path = folder / "images" / f"{img_id}{suffix}"
        if path.is_file():
            return path.resolve()
    return (folder / "images" / f"{img_id}.png").resolve()


def read_rsvqa(root: Path | str, variant: str, split: str = "train", check_images: bool = True) -> list[Record]:
    """RSVQA-``variant`` (``"lr"`` or ``"hr"``) questions of the official ``split`` files, active only.

    ``split`` picks ``{LR,USGS}_split_{split}_*.json`` (``train`` here; ``test``, ``val``,
    ``test_phili`` in the Zenodo release).
    """
    if variant not in RSVQA_TYPES:
        raise ValueError(f"RSVQA variant {variant!r}: choose 'lr' or 'hr'")
    folder = Path(root) / f"rsvqa_{variant}"
    prefix = folder / f"{_RSVQA_PREFIX[variant]}_{split}"
    q_path, a_path, i_path = (Path(f"{prefix}_{part}.json") for part in ("questions", "answers", "images"))
    questions, answers, images = _table(q_path, "questions"), _table(a_path, "answers"), _table(i_path, "images")
    dataset = f"rsvqa_{variant}"
    records, checked = [], set()
    for i, (qid, q) in enumerate(questions.items()):
        where = f"questions[{i}] (id {qid})"
        if not q["active"]:
            continue
        kind, text = require_key(q, "type", q_path, where), require_key(q, "question", q_path, where)
        if kind not in RSVQA_TYPES[variant]:
            raise data_error(q_path, where, f"unknown question type {kind!r}; expected one of {RSVQA_TYPES[variant]}")
        img_id = require_key(q, "img_id", q_path, where)
        if img_id not in images:
            raise data_error(q_path, where, f"img_id {img_id} is not in {i_path.name}")
        if not images[img_id]["active"]:
            continue
        answer_ids = require_key(q, "answers_ids", q_path, where)
        active = [answers[a] for a in answer_ids if a in answers and answers[a]["active"]]
        if not active:
            raise data_error(q_path, where, f"no active answer among answers_ids in {a_path.name}")
        answer = str(require_key(active[0], "answer", a_path, f"id {active[0]['id']}"))
        image = _rsvqa_image(folder, img_id)
        if check_images and image not in checked:
            check_image(image, i_path, f"images id {img_id}")
            checked.add(image)
        records.append(Record(
            id=f"{dataset}/{split}/{qid}", task="vqa", image=image, question=vqa_query(text), answer=answer,
            meta={"dataset": dataset, "type": kind, "question_id": qid, "img_id": img_id, "raw_question": text},
        ))
    return records


def rsivqa_type(question: str) -> str | None:
    """RSIVQA question type from its wording (theme, presence, count, location), or None."""
    return next((name for name, pattern in _RSIVQA_TYPES if pattern.search(question.strip())), None)


def _parse_rsivqa_line(line: str, path: Path, n: int) -> tuple[str, str, str]:
    name, colon, rest = line.partition(":")
    question, mark, answer = rest.partition("?")
    if not colon or not mark or not name.strip().endswith(".tif"):
        raise data_error(path, f"line {n}", f"expected '<k>.tif:<question>?<answer>', got {line!r}")
    if not answer.strip():
        raise data_error(path, f"line {n}", "empty answer")
    return name.strip(), question.strip(), answer.strip()


def read_rsivqa(root: Path | str, check_images: bool = True) -> list[Record]:
    """Every RSIVQA-UCM triplet of ``ucm_vqa.txt`` then ``ucm_res.txt`` (file order)."""
    numbered = read_ucm_numbered(root)
    records, checked = [], set()
    for filename in RSIVQA_FILES:
        path = Path(root) / "rsivqa_ucm" / filename
        for n, line in enumerate(read_lines(path), start=1):
            if not line.strip():
                continue
            name, question, answer = _parse_rsivqa_line(line, path, n)
            kind = rsivqa_type(question)
            if kind is None:
                raise data_error(path, f"line {n}", f"unknown question type for {question!r}")
            image = ucm_image(numbered, name, path, f"line {n}")
            if check_images and image not in checked:
                check_image(image, path, f"line {n}")
                checked.add(image)
            records.append(Record(
                id=f"rsivqa_ucm/{Path(filename).stem}/{n}", task="vqa", image=image,
                question=vqa_query(question + "?"), answer=answer,
                meta={"dataset": "rsivqa_ucm", "type": kind, "raw_question": question + "?",
                      "ucm_name": name, "empty_object": "  " in question},
            ))
    return records
