"""``kdlib score`` on files that are not what the task expects: one line naming file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REGION_CAPTION = {"question_id": "sior_31", "image_id": "00060", "answer": "<p>1 ship</p>",
                  "ground_truth": "small ship", "question": "{<87><34><91><35>|<90>}", "type": "ref",
                  "dataset": "SIOR", "obj_ids": [1], "size_group": "small"}
REFERRING = {"question_id": "fast_1", "image_id": "train_1", "question": "1 airplane at the right",
             "answer": "{<86><34><94><42>|<56>}", "type": "ref", "dataset": "FAST", "size_group": "small",
             "ground_truth": [[[584.0, 337.0], [619.0, 313.0], [601.0, 282.0], [565.0, 304.0]]]}


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_region_caption_file_is_not_scored_as_classification(kdlib_cli, tmp_path):
    path = jsonl(tmp_path / "rc.jsonl", [REGION_CAPTION] * 3)
    got = kdlib_cli("score", "classification", str(path))
    assert got.code == 2 and f"{path}:1:" in got.line and "region-caption" in got.line


def test_a_binary_file_is_named(kdlib_cli, tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_bytes(bytes(range(255, -1, -1)) * 8)
    got = kdlib_cli("score", "vqa", str(path))
    assert got.code == 2 and f"{path}:1:" in got.line and "UTF-8" in got.line


def test_a_huge_coordinate_is_a_bad_line_named_or_skipped(kdlib_cli, tmp_path):
    huge = {**REFERRING, "question_id": "fast_2", "answer": "{<" + "9" * 400 + "><34><94><42>|<56>}"}
    path = jsonl(tmp_path / "ref.jsonl", [REFERRING, huge, REFERRING])
    got = kdlib_cli("score", "referring", str(path))
    assert got.code == 2 and f"{path}:2:" in got.line
    got = kdlib_cli("score", "referring", str(path), "--skip-bad", "--json")
    assert got.code == 0 and f"{path}:2:" in got.line


def test_answers_without_a_readable_box_are_counted(tmp_path, capsys):
    from kdlib.evaluate.score import score_file

    path = jsonl(tmp_path / "ref.jsonl", [REFERRING, {**REFERRING, "answer": "an airplane, no box"}])
    result = score_file("referring", path)
    assert result["n"] == 2 and result["n_unparsable"] == 1
