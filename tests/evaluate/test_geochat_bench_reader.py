"""Reading and validating GeoChat-Bench answer files (kdlib.data.geochat_bench)."""

from __future__ import annotations

import re

import pytest

from kdlib.data.geochat_bench import VQAAnswer, read_answers

SCENE = {"question_id": "forest/forest01.tif", "image_id": "forest/forest01.tif", "answer": "forest",
         "ground_truth": "forest"}
VQA = {"question_id": 7, "image": "0.tif", "category": "comp", "ground_truth": "yes", "answer": "Yes"}
QUAD = [[10.0, 10.0], [20.0, 10.0], [20.0, 30.0], [10.0, 30.0]]
REFERRING = {"question_id": "sior_1", "image_id": "00001", "question": "1 ship", "answer": "{<1><1><3><4>|<90>}",
             "ground_truth": [QUAD], "type": "ref", "dataset": "SIOR", "obj_ids": [0], "size_group": "small"}
REGION = {**REFERRING, "question": "{<1><1><3><4>|<90>}", "answer": "<p>1 ship</p>", "ground_truth": "1 small ship"}

GOOD = {"classification": SCENE, "vqa": VQA, "referring": REFERRING, "region-caption": REGION}
BAD = {
    "classification": ({k: v for k, v in SCENE.items() if k != "answer"}, "missing key 'answer'"),
    "vqa": ({**VQA, "category": "colour"}, "unknown question category 'colour'"),
    "referring": ({**REFERRING, "ground_truth": [[[1, 2], [3, 4]]]}, "'ground_truth'[0] is not 4 [x, y] corners"),
    "region-caption": ({**REGION, "ground_truth": ["a", "b"]}, "key 'ground_truth' must be a string"),
}


@pytest.mark.parametrize("task", sorted(GOOD))
def test_malformed_line_names_file_line_and_problem(task: str, write_jsonl) -> None:
    bad, problem = BAD[task]
    path = write_jsonl(f"{task}.jsonl", [GOOD[task], "", bad])
    with pytest.raises(ValueError, match=re.escape(f"{path}:3: {problem}")):
        read_answers(path, task)


@pytest.mark.parametrize("task", sorted(GOOD))
def test_skip_bad_counts_and_reports(task: str, write_jsonl) -> None:
    path = write_jsonl(f"{task}.jsonl", ["{not json", GOOD[task], BAD[task][0], GOOD[task]])
    answers = read_answers(path, task, skip_bad=True)
    assert len(answers.records) == 2
    assert [m.split(": ", 1)[0] for m in answers.bad_lines] == [f"{path}:1", f"{path}:3"]
    assert "not valid JSON" in answers.bad_lines[0]


def test_vqa_type_key_and_names(write_jsonl) -> None:
    typed = {k: v for k, v in VQA.items() if k != "category"} | {"type": "presence"}
    rows = [VQA, {**VQA, "category": "rural_urban"}, typed]
    records = read_answers(write_jsonl("lrben.jsonl", rows), "vqa").records
    assert records == [VQAAnswer("7", "comparison", "Yes", "yes"), VQAAnswer("7", "rural_urban", "Yes", "yes"),
                       VQAAnswer("7", "presence", "Yes", "yes")]


def test_unknown_task_and_missing_file(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown task 'scene'"):
        read_answers(tmp_path / "x.jsonl", "scene")
    with pytest.raises(FileNotFoundError, match="x.jsonl"):
        read_answers(tmp_path / "x.jsonl", "vqa")


def test_real_files_read_cleanly(data_root) -> None:
    bench = data_root / "geochat_bench"
    for name, task in [("UCmerced_geochat_7b", "classification"), ("referring_geochat_7b", "referring"),
                       ("region_caption_geochat_7b", "region-caption")]:
        answers = read_answers(bench / f"{name}.jsonl", task)
        assert answers.records and not answers.bad_lines
