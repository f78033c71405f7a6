"""``kdlib score`` and ``score_file`` (kdlib.evaluate.score)."""

from __future__ import annotations

import json

import pytest

from kdlib.cli import main
from kdlib.evaluate.paper import paper_value
from kdlib.evaluate.score import score_file

SCENE = [{"question_id": f"{c}/{i}.tif", "answer": a, "ground_truth": c}
         for i, (a, c) in enumerate([("forest", "forest"), ("beach", "forest"), ("Harbor", "port")])]
QUAD = [[0, 0], [60, 0], [60, 60], [0, 60]]
REFERRING = {"question_id": "fast_1", "image_id": "a", "question": "1 plane", "answer": "{<0><0><10><10>|<0>}",
             "ground_truth": [QUAD], "type": "ref", "dataset": "FAST", "obj_ids": [1], "size_group": "large"}


def run_json(capsys, *argv: str) -> dict:
    assert main(["score", *argv, "--json"]) == 0
    captured = capsys.readouterr()
    return {**json.loads(captured.out), "stderr": captured.err}


def test_classification_json_and_synonyms(write_jsonl, capsys) -> None:
    path = write_jsonl("scene.jsonl", SCENE)
    result = run_json(capsys, "classification", str(path), "--synonyms")
    assert (result["OA"], result["AA"], result["n"]) == (33.33, 25.0, 3)
    assert result["per_class"] == {"forest": 50.0, "port": 0.0}
    assert result["synonyms"]["OA"] == 66.67


def test_referring_image_size_option(write_jsonl, capsys) -> None:
    path = write_jsonl("ref.jsonl", [REFERRING])
    assert run_json(capsys, "referring", str(path))["acc@0.5"] == 100.0  # FAST: 600 px, 10 % = 60 px
    result = run_json(capsys, "referring", str(path), "--image-size", "1000")  # 100 px box: IoU 0.36
    assert (result["acc@0.5"], result["acc@0.25"], result["image_size"]) == (0.0, 100.0, 1000)


def test_tables_for_people(write_jsonl, capsys) -> None:
    vqa = write_jsonl("vqa.jsonl", [{"question_id": 1, "category": "comp", "ground_truth": "yes", "answer": "yes"},
                                    {"question_id": 2, "type": "count", "ground_truth": "3", "answer": "4"}])
    assert main(["score", "vqa", str(vqa)]) == 0
    out = capsys.readouterr().out
    assert "comparison" in out and "mOA (question-weighted) 100.00" in out
    assert main(["score", "referring", str(write_jsonl("ref.jsonl", [REFERRING]))]) == 0
    assert "size large" in capsys.readouterr().out


def test_bad_line_stops_or_is_skipped(write_jsonl, capsys) -> None:
    path = write_jsonl("scene.jsonl", [SCENE[0], {"question_id": "x"}, SCENE[1]])
    assert main(["score", "classification", str(path)]) == 2
    assert f"{path}:2: missing key 'answer'" in capsys.readouterr().err
    result = run_json(capsys, "classification", str(path), "--skip-bad")
    assert (result["n"], result["skipped_lines"]) == (2, 1)
    assert f"skipped {path}:2: missing key 'answer'" in result["stderr"]


def test_empty_file_and_bad_size(write_jsonl, capsys) -> None:
    assert main(["score", "vqa", str(write_jsonl("empty.jsonl", [""]))]) == 2
    assert "no answer to score" in capsys.readouterr().err
    assert main(["score", "referring", "x.jsonl", "--image-size", "0"]) == 2
    assert "--image-size must be positive" in capsys.readouterr().err


def test_ucmerced_acceptance(data_root, capsys) -> None:
    result = run_json(capsys, "classification", str(data_root / "geochat_bench" / "UCmerced_geochat_7b.jsonl"))
    assert result["OA"] == result["AA"] == paper_value(4, "AA", "UCMerced", "GeoChat-7B")


def test_score_file_api_keeps_full_precision(data_root) -> None:
    result = score_file("classification", data_root / "geochat_bench" / "UCmerced_geochat_7b.jsonl")
    assert result["OA"] == pytest.approx(paper_value(4, "AA", "UCMerced", "GeoChat-7B"), abs=0.005)
    assert result["OA"] != round(result["OA"], 2)  # the API does not round; --json does
