"""The evaluation runner: answer files that ``score_file`` / ``kdlib score`` read, model-folder
errors, and ``kdlib evaluate`` end to end on the tiny profile."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from kdlib.cli import main
from kdlib.data.dota import DotaObject
from kdlib.data.geochat_bench import read_answers
from kdlib.data.prompts import scene_query, vqa_query
from kdlib.data.records import Record
from kdlib.data.regions import TileSpec, dota_region_records
from kdlib.evaluate import generate
from kdlib.evaluate.grounding import grounding_metrics
from kdlib.evaluate.runner import evaluate_model, score_answers
from kdlib.evaluate.tasks import EVAL_TASKS, crop_image_id
from kdlib.models.io import LoadedMLLM, load_for_inference

CLASSES = ("dense residential", "golf course", "river")
ORACLE = LoadedMLLM(model=None, tokenizer=None, image_processor=None)  # answers come from `oracle`


@pytest.fixture
def oracle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generation replaced by the reference answers (a perfect 'model')."""
    monkeypatch.setattr(generate, "generate_answers", lambda mllm, records, *a, **k: [r.answer for r in records])


def image(path: Path, size: tuple[int, int] = (48, 48)) -> Path:
    Image.new("RGB", size, (90, 120, 60)).save(path)
    return path


@pytest.fixture
def scene_records(tmp_path: Path) -> list[Record]:
    return [Record(id=f"ucmerced/{c.replace(' ', '')}/{i}", task="scene",
                   image=image(tmp_path / f"{c.replace(' ', '')}{i}.jpg"), question=scene_query(CLASSES), answer=c,
                   meta={"dataset": "ucmerced", "label": k, "class_dir": c.replace(" ", "")})
            for k, c in enumerate(CLASSES) for i in range(2)]


@pytest.fixture
def vqa_records(tmp_path: Path) -> list[Record]:
    rows = [("presence", "Is a road present?", "yes"), ("comp", "Are there more roads than houses?", "no"),
            ("rural_urban", "Is it a rural or an urban area?", "rural"), ("count", "How many roads?", "3")]
    return [Record(id=f"rsvqa_lr/train/{i}", task="vqa", image=image(tmp_path / f"{i}.png"), question=vqa_query(q),
                   answer=a, meta={"dataset": "rsvqa_lr", "type": t, "question_id": i, "img_id": i, "raw_question": q})
            for i, (t, q, a) in enumerate(rows)]


@pytest.fixture
def dota_records(tmp_path: Path) -> list[Record]:
    """kdlib's DOTA-crop records on a synthetic 200 x 150 image: the last crops are clipped (72 x 22 px
    dropped, 72 wide kept), so crops of two sizes appear; two objects share the top-left cell of the
    first crop, which gives a grounding question."""
    quads = [((5, 5), (20, 5), (20, 15), (5, 15)), ((22, 22), (38, 22), (38, 35), (22, 35)),
             ((50, 60), (70, 50), (80, 70), (60, 80)),
             ((140, 20), (170, 20), (170, 40), (140, 40)), ((150, 90), (190, 90), (190, 120), (150, 120))]
    objects = tuple(DotaObject(q, "small-vehicle" if i % 2 else "ship", False) for i, q in enumerate(quads))
    source = Record(id="dota/P9", task="grounding", image=image(tmp_path / "P9.png", (200, 150)), question="",
                    answer="", meta={"dataset": "dota", "objects": objects, "width": 200, "height": 150})
    return dota_region_records([source], TileSpec(tile=128, max_boxes=4, captions_per_tile=4))


def test_oracle_answers_score_perfectly(oracle, tmp_path: Path, scene_records, vqa_records, dota_records,
                                       capsys) -> None:
    cases = {"scene_ucmerced": scene_records, "vqa_lr": vqa_records,
             "region_caption": EVAL_TASKS["region_caption"].select(dota_records)}
    results = {}
    for task, records in cases.items():
        run = evaluate_model(ORACLE, records, task, tmp_path / "answers" / f"{task}.jsonl", max_new_tokens=4)
        assert run.n == len(records) and run.max_new_tokens == 4
        results[task] = score_answers(task, run.path)
    assert (results["scene_ucmerced"]["OA"], results["scene_ucmerced"]["AA"]) == (100.0, 100.0)
    assert (results["vqa_lr"]["mOA"], results["vqa_lr"]["count"]) == (100.0, 100.0)
    assert (results["region_caption"]["ROUGE-1"], results["region_caption"]["ROUGE-L"]) == (100.0, 100.0)
    assert main(["score", "classification", str(tmp_path / "answers" / "scene_ucmerced.jsonl"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["OA"] == 100.0


def test_referring_sizes_from_written_crops_equal_record_sizes(oracle, tmp_path: Path, dota_records) -> None:
    records = EVAL_TASKS["referring"].select(dota_records)
    assert {r.task for r in records} == {"refer", "grounding"}
    run = evaluate_model(ORACLE, records, "referring", tmp_path / "referring.jsonl", max_new_tokens=4)
    crops = tmp_path / "images"
    sizes = {crop_image_id(r): (r.meta["width"], r.meta["height"]) for r in records}
    assert len(set(sizes.values())) == 2, "the synthetic image should give crops of two sizes"
    for image_id, size in sizes.items():
        with Image.open(crops / f"{image_id}.png") as im:
            assert im.size == size
    from_images = score_answers("referring", run.path, crops)
    from_records = grounding_metrics(read_answers(run.path, "referring").records, image_sizes=sizes)
    assert from_images == {**from_records, "image_size": "from the images"}
    assert from_images["n_boxes"] == sum(len(r.meta["boxes"]) for r in records)


def test_answer_keys_match_geochat_bench_files(data_root: Path, tmp_path: Path, oracle, scene_records,
                                               dota_records) -> None:
    bench = data_root / "geochat_bench"
    cases = {"scene_ucmerced": (scene_records, "UCmerced_geochat_7b.jsonl"),
             "referring": (EVAL_TASKS["referring"].select(dota_records), "referring_geochat_7b.jsonl"),
             "region_caption": (EVAL_TASKS["region_caption"].select(dota_records), "region_caption_geochat_7b.jsonl")}
    for task, (records, real) in cases.items():
        path = evaluate_model(ORACLE, records, task, tmp_path / f"{task}.jsonl", max_new_tokens=4).path
        ours = json.loads(path.read_text().splitlines()[0])
        theirs = json.loads((bench / real).read_text().splitlines()[0])
        assert set(ours) == set(theirs), task


def test_records_of_another_task_are_refused_before_generating(monkeypatch, tmp_path: Path, scene_records) -> None:
    monkeypatch.setattr(generate, "generate_answers", lambda *a, **k: pytest.fail("generated"))
    with pytest.raises(ValueError, match=f"record {scene_records[0].id} .* not part of evaluation task vqa_lr"):
        evaluate_model(ORACLE, scene_records, "vqa_lr", tmp_path / "x.jsonl", max_new_tokens=4)
    with pytest.raises(ValueError, match="unknown evaluation task 'scene'"):
        evaluate_model(ORACLE, scene_records, "scene", tmp_path / "x.jsonl", max_new_tokens=4)
    assert not (tmp_path / "x.jsonl").exists()


def test_model_folder_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent")):
        load_for_inference(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"model folder {empty} cannot be loaded"):
        load_for_inference(empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ValueError, match=f"model folder {broken} cannot be loaded.*neither"):
        load_for_inference(broken)


def save_tiny_models(out: Path) -> None:
    """Random tiny teacher and students saved as the training chapter saves them."""
    from kdlib.data.prompts import chat_text
    from kdlib.data.scene import UCM_SPACED
    from kdlib.models.build import build_pair
    from kdlib.models.io import save_mllm
    from kdlib.models.tokenizer import build_tokenizer
    from kdlib.profiles import get_profile

    profile = get_profile("tiny")
    tokenizer = build_tokenizer([chat_text(scene_query(list(UCM_SPACED.values())), "river")], profile.vocab_size)
    pair = build_pair(profile, tokenizer)
    for name, model in (("teacher", pair.teacher), ("student_sft", pair.student), ("student_kd", pair.student)):
        save_mllm(out / "models" / name, model, tokenizer, pair.image_processor)


def test_evaluate_cli_writes_answers_and_results(data_root: Path, tmp_path: Path, capsys) -> None:
    argv = ["evaluate", "--profile", "tiny", "--out", str(tmp_path), "--data-root", str(data_root),
            "--tasks", "scene_ucmerced", "referring", "--limit", "2", "--max-new-tokens", "3", "--no-progress"]
    assert main(argv) == 2
    assert f"{tmp_path / 'models' / 'student_sft'}" in capsys.readouterr().err
    save_tiny_models(tmp_path)
    assert main(argv) == 0
    for model in ("teacher", "student_sft", "student_kd"):
        for task in ("scene_ucmerced", "referring"):
            lines = (tmp_path / "answers" / model / f"{task}.jsonl").read_text().splitlines()
            result = json.loads((tmp_path / "results" / model / f"{task}.json").read_text())
            assert len(lines) == 2 == result["provenance"]["n"]
            assert {"profile", "device", "date", "max_new_tokens"} <= set(result["provenance"])
            assert result["provenance"]["profile"] == "tiny" and result["provenance"]["max_new_tokens"] == 3
    assert any((tmp_path / "answers" / "images").glob("*.png"))
    assert "scene_ucmerced OA" in capsys.readouterr().out


def test_evaluate_reuses_results_that_still_hold(data_root: Path, tmp_path: Path) -> None:
    save_tiny_models(tmp_path)
    argv = ["evaluate", "--profile", "tiny", "--out", str(tmp_path), "--data-root", str(data_root), "--models",
            "student_kd", "--tasks", "scene_ucmerced", "--limit", "2", "--max-new-tokens", "3", "--no-progress"]
    answers = tmp_path / "answers" / "student_kd" / "scene_ucmerced.jsonl"

    def written() -> int:
        return answers.stat().st_mtime_ns

    assert main(argv) == 0
    first = written()
    assert main(argv) == 0 and written() == first  # same model, records and budget: reused
    assert main([*argv[:-2], "4", "--no-progress"]) == 0 and written() > first  # another token budget
    second = written()
    assert main([*argv, "--no-reuse"]) == 0 and written() > second
    third = written()
    later = third / 1e9 + 5
    for f in (tmp_path / "models" / "student_kd").iterdir():  # the model is saved again after the result
        os.utime(f, (later, later))
    assert main(argv) == 0 and written() > third
