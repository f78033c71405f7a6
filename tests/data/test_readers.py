"""The readers on the real data: counts (MANIFEST and an independent count), class names, joins."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from kdlib.data import (
    TASKS, read_aid, read_dota, read_rsivqa, read_rsvqa, read_ucm_captions, read_ucmerced,
)
from kdlib.data.scene import class_names


def _manifest_files(root: Path, dataset: str) -> int:
    return json.loads((root / "manifest.json").read_text())["datasets"][dataset]["files"]


def _bench_classes(root: Path, name: str) -> dict[str, str]:
    lines = (root / "geochat_bench" / name).read_text().splitlines()
    return {json.loads(l)["image_id"].split("/")[0]: json.loads(l)["ground_truth"] for l in lines}


@pytest.mark.parametrize("reader, dataset, n_classes, per_class, bench", [
    (read_ucmerced, "ucmerced", 21, 100, "UCmerced_geochat_7b.jsonl"),
    (read_aid, "aid", 30, 50, "AID_geochat_7b.jsonl"),
])
def test_scene_counts_and_geochat_class_names(data_root, reader, dataset, n_classes, per_class, bench):
    records = reader(data_root)
    metadata_files = len([p for p in (data_root / dataset).iterdir() if p.is_file()])
    assert len(records) == _manifest_files(data_root, dataset) - metadata_files == n_classes * per_class
    assert set(Counter(r.answer for r in records).values()) == {per_class}
    # every class folder's name is spaced exactly as GeoChat-Bench's ground truth writes it
    truth = _bench_classes(data_root, bench)
    assert {r.meta["class_dir"]: r.answer for r in records} == truth
    # label = index in classes.txt
    folders = (data_root / dataset / "classes.txt").read_text().split()
    assert all(folders[r.meta["label"]] == r.meta["class_dir"] for r in records)
    assert list(class_names(records)) == [truth[f] for f in folders]
    assert all(", ".join(class_names(records)) in r.question for r in records)


@pytest.mark.parametrize("variant, prefix, total, types", [
    ("lr", "LR_split_train", 5005, {"presence": 1491, "comp": 1993, "count": 1471, "rural_urban": 50}),
    ("hr", "USGS_split_train", 5001, {"presence": 1314, "comp": 1642, "count": 1319, "area": 726}),
])
def test_rsvqa_join(data_root, variant, prefix, total, types):
    records = read_rsvqa(data_root, variant)
    folder = data_root / f"rsvqa_{variant}"
    questions = json.loads((folder / f"{prefix}_questions.json").read_text())["questions"]
    answers = {a["id"]: a["answer"] for a in json.loads((folder / f"{prefix}_answers.json").read_text())["answers"]}
    # MANIFEST numbers, and the same numbers counted straight from the JSON
    assert len(records) == total == sum(q["active"] for q in questions)
    assert Counter(r.meta["type"] for r in records) == types == Counter(q["type"] for q in questions)
    by_id = {r.meta["question_id"]: r for r in records}
    for q in questions[::97]:
        rec = by_id[q["id"]]
        assert rec.answer == answers[q["answers_ids"][0]]
        assert rec.image.name.startswith(f"{q['img_id']}.") and rec.image.is_file()
        assert rec.question.startswith(q["question"]) and rec.meta["raw_question"] == q["question"]
    assert len({r.image for r in records}) == 50


def test_ucm_captions(data_root):
    records = read_ucm_captions(data_root)
    assert len(records) == 2100
    assert sum(len(r.meta["references"]) for r in records) == 2100 * 5
    assert Counter(r.meta["split"] for r in records) == {"train": 1680, "val": 210, "test": 210}
    assert len({r.image for r in records}) == 2100
    first = records[0]  # 1.tif = agricultural01 (MANIFEST 1)
    assert first.image.name == "agricultural01.jpg" and first.answer == "There is a piece of farmland."


def test_rsivqa(data_root):
    records = read_rsivqa(data_root)
    lines = {name: len((data_root / "rsivqa_ucm" / name).read_text().splitlines())
             for name in ("ucm_vqa.txt", "ucm_res.txt")}
    assert lines == {"ucm_vqa.txt": 2100, "ucm_res.txt": 2795}
    assert len(records) == sum(lines.values())
    assert Counter(r.id.split("/")[1] for r in records) == {"ucm_vqa": 2100, "ucm_res": 2795}
    # ucm_vqa's theme answer names the UCMerced class of the image ("farmland" for agricultural);
    # ucm_res mostly does too (the source says "airport" for the airplane images, once "harobr")
    ucm = {r.image: r.answer for r in read_ucmerced(data_root, check_images=False)}
    for part, share in (("ucm_vqa", 1.0), ("ucm_res", 0.9)):
        themes = [r for r in records if r.meta["type"] == "theme" and f"/{part}/" in r.id]
        agree = sum(ucm[r.image] == r.answer or (r.answer, ucm[r.image]) == ("farmland", "agricultural")
                    for r in themes)
        assert agree >= share * len(themes) > 0
    assert Counter(r.meta["empty_object"] for r in records)[True] > 0


def test_dota(data_root):
    records = {r.id: r for r in read_dota(data_root)}
    assert set(records) == {"dota/P0706", "dota/P1888"}
    big, small = records["dota/P0706"].meta, records["dota/P1888"].meta
    assert (big["width"], big["height"], small["width"], small["height"]) == (1111, 1182, 712, 557)
    assert Counter(o.category for o in big["objects"]) == {"ship": 531, "harbor": 5}
    assert Counter(o.category for o in small["objects"]) == {"large-vehicle": 50, "small-vehicle": 14}
    first = small["objects"][0]  # "674 375 683 375 684 394 675 395 small-vehicle 0" (CRLF line)
    assert first.quad == ((674, 375), (683, 375), (684, 394), (675, 395)) and not first.difficult


def test_record_tasks_are_known(data_root):
    for records in (read_ucmerced(data_root, check_images=False), read_rsivqa(data_root, check_images=False)):
        assert {r.task for r in records} <= set(TASKS)
        assert len({r.id for r in records}) == len(records)
