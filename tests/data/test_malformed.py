"""Every reader rejects malformed input with a DataError naming the file, the line / key and the problem.

Each test builds a small broken copy of a real dataset in ``tmp_path``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kdlib.data import (
    DataError, load_geochat_instruct, read_aid, read_dota, read_rsivqa, read_rsvqa, read_ucm_captions, read_ucmerced,
)


def _scene_root(tmp_path: Path, data_root: Path, dataset: str, folders: list[str]) -> Path:
    for folder in folders:
        source = sorted((data_root / dataset / folder).glob("*.jpg"))[0]
        (tmp_path / dataset / folder).mkdir(parents=True)
        shutil.copy(source, tmp_path / dataset / folder / source.name)
    (tmp_path / dataset / "classes.txt").write_text("\n".join(folders) + "\n")
    return tmp_path


def _rsvqa_root(tmp_path: Path, data_root: Path, types=("presence", "count")) -> Path:
    folder = tmp_path / "rsvqa_lr"
    (folder / "images").mkdir(parents=True)
    shutil.copy(data_root / "rsvqa_lr" / "images" / "0.png", folder / "images" / "0.png")
    questions = [{"id": i, "img_id": 0, "type": t, "question": f"q{i}?", "answers_ids": [i], "active": True}
                 for i, t in enumerate(types)]
    answers = [{"id": i, "question_id": i, "answer": "yes", "active": True} for i in range(len(types))]
    images = [{"id": 0, "questions_ids": list(range(len(types))), "active": True}]
    for part, key, value in (("questions", "questions", questions), ("answers", "answers", answers),
                             ("images", "images", images)):
        (folder / f"LR_split_train_{part}.json").write_text(json.dumps({key: value}))
    return tmp_path


def _ucm_numbered_root(tmp_path: Path, data_root: Path) -> Path:
    root = _scene_root(tmp_path, data_root, "ucmerced", ["agricultural"])
    name = sorted((root / "ucmerced" / "agricultural").iterdir())[0].name
    (root / "ucmerced" / "ucm_numbered_filenames.json").write_text(json.dumps({"1.tif": f"agricultural/{name}"}))
    return root


def test_valid_copies_read(tmp_path, data_root):
    """The helpers build readable data: the failures below come from the one defect each adds."""
    assert len(read_ucmerced(_scene_root(tmp_path / "u", data_root, "ucmerced", ["beach", "forest"]))) == 2
    assert [r.answer for r in read_rsvqa(_rsvqa_root(tmp_path / "v", data_root), "lr")] == ["yes", "yes"]


def test_unknown_scene_class(tmp_path, data_root):
    root = _scene_root(tmp_path, data_root, "ucmerced", ["beach"])
    (root / "ucmerced" / "classes.txt").write_text("beach\nspaceport\n")
    with pytest.raises(DataError, match=r"classes\.txt: line 2: unknown class 'spaceport'"):
        read_ucmerced(root)


def test_aid_class_not_in_geochat_form(tmp_path, data_root):
    root = _scene_root(tmp_path, data_root, "aid", ["Airport"])
    (root / "aid" / "classes.txt").write_text("Airport\nbare_land\n")
    with pytest.raises(DataError, match=r"aid/classes\.txt: line 2: unknown class 'bare_land'"):
        read_aid(root)


def test_unlisted_class_folder(tmp_path, data_root):
    root = _scene_root(tmp_path, data_root, "aid", ["Airport", "Beach"])
    (root / "aid" / "classes.txt").write_text("Airport\n")
    with pytest.raises(DataError, match=r"Beach: unknown class folder 'Beach'"):
        read_aid(root)


def test_corrupt_jpeg(tmp_path, data_root):
    root = _scene_root(tmp_path, data_root, "ucmerced", ["beach"])
    image = next((root / "ucmerced" / "beach").iterdir())
    image.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=rf"beach: file {image.name}: image .*{image.name} is not a readable image"):
        read_ucmerced(root)
    assert len(read_ucmerced(root, check_images=False)) == 1  # only the check reads pixels


def test_truncated_jpeg(tmp_path, data_root):
    root = _scene_root(tmp_path, data_root, "ucmerced", ["beach"])
    image = next((root / "ucmerced" / "beach").iterdir())
    image.write_bytes(image.read_bytes()[:5000])
    with pytest.raises(DataError, match=rf"{image.name} is a truncated JPEG"):
        read_ucmerced(root)


def test_rsvqa_truncated_json(tmp_path, data_root):
    root = _rsvqa_root(tmp_path, data_root)
    path = root / "rsvqa_lr" / "LR_split_train_questions.json"
    path.write_text(path.read_text()[:60])
    with pytest.raises(DataError, match=r"LR_split_train_questions\.json: line 1 column \d+: malformed JSON"):
        read_rsvqa(root, "lr")


def test_rsvqa_missing_image(tmp_path, data_root):
    root = _rsvqa_root(tmp_path, data_root)
    (root / "rsvqa_lr" / "images" / "0.png").unlink()
    with pytest.raises(DataError, match=r"LR_split_train_images\.json: images id 0: image .*0\.png does not exist"):
        read_rsvqa(root, "lr")


def test_rsvqa_unknown_type(tmp_path, data_root):
    root = _rsvqa_root(tmp_path, data_root, types=("presence", "colour"))
    with pytest.raises(DataError, match=r"questions\.json: questions\[1\] \(id 1\): unknown question type 'colour'"):
        read_rsvqa(root, "lr")


def test_rsvqa_missing_key(tmp_path, data_root):
    root = _rsvqa_root(tmp_path, data_root)
    path = root / "rsvqa_lr" / "LR_split_train_answers.json"
    path.write_text(json.dumps({"answers": [{"id": 0, "answer": "yes"}]}))
    with pytest.raises(DataError, match=r"answers\.json: answers\[0\]: missing key 'active'"):
        read_rsvqa(root, "lr")


def test_rsivqa_bad_line(tmp_path, data_root):
    root = _ucm_numbered_root(tmp_path, data_root)
    (root / "rsivqa_ucm").mkdir()
    (root / "rsivqa_ucm" / "ucm_vqa.txt").write_text("1.tif:what is the theme of this picture?farmland\n")
    res = root / "rsivqa_ucm" / "ucm_res.txt"
    res.write_text("1.tif:Does this picture contain trees?yes\n1.tif:no question mark\n")
    with pytest.raises(DataError, match=r"ucm_res\.txt: line 2: expected '<k>\.tif:<question>\?<answer>'"):
        read_rsivqa(root)
    (root / "rsivqa_ucm" / "ucm_res.txt").write_text("2.tif:Does this picture contain trees?yes\n")
    with pytest.raises(DataError, match=r"ucm_res\.txt: line 1: image '2\.tif' is not in ucm_numbered"):
        read_rsivqa(root)


def test_captions_missing_key(tmp_path, data_root):
    root = _ucm_numbered_root(tmp_path, data_root)
    path = root / "captions" / "ucm_captions" / "dataset_ucm_modified.json"
    path.parent.mkdir(parents=True)
    good = {"filename": "1.tif", "split": "train", "sentences": [{"raw": "a beach ."}]}
    path.write_text(json.dumps({"images": [good, {"filename": "1.tif", "split": "train"}]}))
    with pytest.raises(DataError, match=r"dataset_ucm_modified\.json: images\[1\]: missing key 'sentences'"):
        read_ucm_captions(root)


def _dota_root(tmp_path: Path, data_root: Path, lines: list[str]) -> Path:
    folder = tmp_path / "grounding" / "dota_devkit_example"
    (folder / "images").mkdir(parents=True)
    (folder / "labelTxt").mkdir()
    shutil.copy(data_root / "grounding" / "dota_devkit_example" / "images" / "P1888.png", folder / "images")
    (folder / "labelTxt" / "P1888.txt").write_bytes("\r\n".join(lines).encode() + b"\r\n")
    return tmp_path


def test_dota_bad_box(tmp_path, data_root):
    good = "674 375 683 375 684 394 675 395 small-vehicle 0"
    root = _dota_root(tmp_path, data_root, ["imagesource:GoogleEarth", "gsd:0.27", good, "1 2 3 x 5 6 7 8 ship 0"])
    with pytest.raises(DataError, match=r"P1888\.txt: line 4: box coordinates are not numbers"):
        read_dota(root)
    root = _dota_root(tmp_path / "b", data_root, [good, "1 2 3 4 5 6 7 8 9 ship 0"])
    with pytest.raises(DataError, match=r"P1888\.txt: line 2: expected 8 coordinates"):
        read_dota(root)
    root = _dota_root(tmp_path / "c", data_root, [good, "1 2 3 4 5 6 7 8 spaceship 0"])
    with pytest.raises(DataError, match=r"P1888\.txt: line 2: unknown category 'spaceship'"):
        read_dota(root)


def test_geochat_instruct_errors(tmp_path):
    path = tmp_path / "GeoChat_Instruct.json"
    good = {"id": "a", "image": "a.png", "conversations": [{"from": "human", "value": "<image>\nq"},
                                                            {"from": "gpt", "value": "x"}]}
    path.write_text(json.dumps([good])[:-10])
    with pytest.raises(DataError, match=r"GeoChat_Instruct\.json: line 1 column \d+: malformed JSON"):
        load_geochat_instruct(path)
    path.write_text(json.dumps([good, {"id": "b", "image": "b.png"}]))
    with pytest.raises(DataError, match=r"GeoChat_Instruct\.json: index 1: missing key 'conversations'"):
        load_geochat_instruct(path)
    swapped = dict(good, conversations=good["conversations"][::-1])
    path.write_text(json.dumps([good, swapped]))
    with pytest.raises(DataError, match=r"index 1\.conversations\[0\] key 'from': expected 'human', got 'gpt'"):
        load_geochat_instruct(path)
    no_image = dict(good, conversations=[{"from": "human", "value": "q"}, {"from": "gpt", "value": "x"}])
    path.write_text(json.dumps([no_image]))
    with pytest.raises(DataError, match=r"index 0 key 'conversations': <image> appears 0 times; expected 1"):
        load_geochat_instruct(path)
    path.write_text(json.dumps([good]))
    with pytest.raises(DataError, match=r"index 0 key 'image': image .*a\.png does not exist"):
        load_geochat_instruct(path, image_root=tmp_path, check_files=True)
