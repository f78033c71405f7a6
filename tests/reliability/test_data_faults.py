"""Corrupt images and malformed dataset files are DataErrors naming the file and the entry."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdlib.data.records import DataError, Record, check_image, decode_record_images, load_image
from kdlib.data.splits import split_by_group
from kdlib.data.vqa import read_rsvqa


def scribbled_jpeg(folder: Path) -> Path:
    """A JPEG with 2,000 random bytes written at its middle: header and end marker intact."""
    path = folder / "scribbled.jpg"
    pixels = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 2000] = random.Random(0).randbytes(2000)
    path.write_bytes(bytes(data))
    return path


def halved_tiff(folder: Path) -> Path:
    path = folder / "halved.tif"
    Image.fromarray(np.full((128, 128, 3), 7, dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


@pytest.mark.parametrize("make", [scribbled_jpeg, halved_tiff])
def test_a_corrupt_image_is_named_when_decoded(tmp_path, make):
    path = make(tmp_path)
    record = Record(id="aid/x/1", task="scene", image=path, question="q", answer="a")
    with pytest.raises(DataError, match="cannot be decoded") as err:
        load_image(record)
    assert str(path) in str(err.value) and "aid/x/1" in str(err.value)
    with pytest.raises(DataError, match=str(path)):
        decode_record_images([record])


def test_the_cheap_check_misses_a_scribbled_jpeg_so_the_full_decode_is_needed(tmp_path):
    check_image(scribbled_jpeg(tmp_path), "source", "entry")  # passes: why decode_images exists


def test_small_and_paper_decode_every_training_image_before_training(tmp_path, fast_profile, fast_study, data_root):
    from kdlib.profiles import get_profile
    from kdlib.run import make_context
    from kdlib.train.study import train_run

    assert get_profile("small").data.decode_images and get_profile("paper").data.decode_images
    bad = scribbled_jpeg(tmp_path)
    study = type(fast_study)(**{**fast_study.__dict__, "train": [
        Record(**{**fast_study.train[0].__dict__, "image": bad}), *fast_study.train[1:]]})
    profile = fast_profile.override({"data.decode_images": True})
    with pytest.raises(DataError, match=str(bad)):
        train_run(make_context(profile, data_root, tmp_path / "out", device="cpu", progress=False), "sft",
                  role="teacher", study=study)
    assert not (tmp_path / "out" / "models" / "teacher").exists()


def rsvqa_root(tmp_path: Path, question: dict, answer: dict) -> Path:
    """An RSVQA-LR folder with one image and one question / answer (fields overridden by the test)."""
    folder = tmp_path / "rsvqa_lr"
    (folder / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "images" / "0.png")
    q = {"id": 0, "img_id": 0, "type": "presence", "question": "Is there a road", "answers_ids": [0],
         "active": True, **question}
    a = {"id": 0, "question_id": 0, "answer": "yes", "active": True, **answer}
    files = {"questions": q, "answers": a, "images": {"id": 0, "active": True}}
    for part, entry in files.items():
        (folder / f"LR_split_train_{part}.json").write_text(json.dumps({part: [entry]}))
    return tmp_path


@pytest.mark.parametrize("question, answer, file, key", [
    ({"img_id": [0]}, {}, "questions", "img_id"),
    ({"question": None}, {}, "questions", "question"),
    ({}, {"answer": None}, "answers", "answer"),
])
def test_rsvqa_fields_of_the_wrong_type_are_named(tmp_path, question, answer, file, key):
    root = rsvqa_root(tmp_path, question, answer)
    with pytest.raises(DataError, match=rf"LR_split_train_{file}\.json: .*key '{key}' must be") as err:
        read_rsvqa(root, "lr")
    assert "\n" not in str(err.value)


def test_rsvqa_with_every_field_right_reads(tmp_path):
    [record] = read_rsvqa(rsvqa_root(tmp_path, {}, {}), "lr")
    assert record.answer == "yes"


def test_an_extra_image_in_a_ucmerced_class_folder_is_named(tmp_path, data_root):
    from kdlib.data.scene import read_ucmerced

    root = tmp_path / "data"
    shutil.copytree(data_root / "ucmerced", root / "ucmerced")
    extra = root / "ucmerced" / "agricultural" / "agricultural99.jpg"
    Image.new("RGB", (8, 8)).save(extra)
    records = read_ucmerced(root, check_images=False)
    known = {r.image_key: "train" for r in records if r.image != extra.resolve()}
    with pytest.raises(DataError, match="agricultural99.jpg") as err:
        split_by_group(records, known, "captions.json")
    assert "captions.json" in str(err.value)
