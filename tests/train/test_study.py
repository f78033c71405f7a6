"""The study's trainings: one teacher for every seed, one data split for every seed."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from kdlib.data.study import load_study
from kdlib.run import RunContext
from kdlib.train.study import run_study_training


def _data(ctx: RunContext, name: str) -> dict:
    return json.loads((ctx.train_dir(name) / "data.json").read_text())


def test_other_seeds_train_students_only_from_the_books_teacher_and_split(profile, data_root, tmp_path: Path):
    ids = {seed: [r.id for r in load_study(profile, data_root, seed=seed).test] for seed in (0, 1)}
    assert ids[0] != ids[1], "the split depends on its seed, so one seed must fix it for the whole study"
    book = RunContext(profile, Path(data_root), tmp_path, 0, torch.device("cpu"), False)
    first = run_study_training(book)
    teacher_file = first.runs["teacher"].model / "model.safetensors"
    trained = teacher_file.stat().st_mtime_ns
    seed1 = book.for_seed(1)
    second = run_study_training(seed1)
    assert second.runs["teacher"] == first.runs["teacher"] and teacher_file.stat().st_mtime_ns == trained
    assert not (seed1.out_dir / "models" / "teacher").exists() and not (seed1.out_dir / "train" / "teacher").exists()
    assert _data(seed1, "student_kd")["train_records"] == _data(book, "student_kd")["train_records"]
    began = [(seed1.train_dir("student_kd") / name).resolve() for name in _data(seed1, "student_kd")["starts"]]
    assert began == [book.model_dir("teacher").resolve(), seed1.model_dir("student_sft").resolve()]
    sft = [load_file(ctx.model_dir("student_sft") / "model.safetensors") for ctx in (book, seed1)]
    assert any(not torch.equal(sft[0][k], sft[1][k]) for k in sft[0]), "the seed no longer varies the students"
