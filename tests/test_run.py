"""A run's context: one layout of its output folder, one default folder for every entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdlib.paths import REPO_ROOT
from kdlib.profiles import get_profile
from kdlib.run import RunContext, default_out_dir, make_context


def test_the_layout_is_under_the_output_folder(tmp_path: Path):
    ctx = RunContext(get_profile("tiny"), tmp_path / "data", tmp_path / "out", 0, torch.device("cpu"), False)
    paths = [ctx.model_dir("teacher"), ctx.train_dir("student_kd"), ctx.answers_file("teacher", "vqa_lr"),
             ctx.crops_dir, ctx.result_file("teacher", "vqa_lr"), ctx.chapter_file("seeds.json"),
             ctx.figure_file("seeds.png"), ctx.vision_cache, ctx.for_seed(3).model_dir("teacher")]
    assert all(p.is_relative_to(ctx.out_dir) for p in paths)
    assert len({p.parent for p in paths[:3]} | {ctx.results_dir("teacher")}) == 4
    assert ctx.result_file("teacher", "vqa_lr").parent == ctx.results_dir("teacher")
    assert ctx.figure_file("x.png").parent.is_dir()
    assert ctx.for_seed(3).out_dir != ctx.out_dir and ctx.for_seed(0) is ctx


def test_one_default_output_folder(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the working directory does not move it
    assert default_out_dir("tiny") == REPO_ROOT / "runs" / "tiny"
    ctx = make_context(get_profile("tiny"), tmp_path, tmp_path / "given", device="cpu")
    assert ctx.out_dir == (tmp_path / "given").resolve() and ctx.out_dir.is_dir()


def test_require_names_the_notebook_that_writes_a_missing_file(tmp_path: Path):
    ctx = RunContext(get_profile("tiny"), tmp_path, tmp_path, 0, torch.device("cpu"), False)
    with pytest.raises(FileNotFoundError, match="run the notebook 'training' first"):
        ctx.require(ctx.model_dir("teacher"), producer="training")
    ctx.model_dir("teacher").mkdir(parents=True)
    assert ctx.require(ctx.model_dir("teacher"), producer="training") == ctx.model_dir("teacher")


def test_every_seed_finds_the_books_teacher_and_data_split(tmp_path: Path):
    book = RunContext(get_profile("tiny"), tmp_path / "data", tmp_path / "out", 0, torch.device("cpu"), False)
    seed1 = book.for_seed(1)
    assert seed1.root is book and seed1.for_seed(0) is book and seed1.for_seed(2).root is book
    assert seed1.model_dir("teacher") == book.model_dir("teacher") == tmp_path / "out" / "models" / "teacher"
    assert seed1.train_dir("teacher") == book.train_dir("teacher")
    assert seed1.model_dir("student_kd") == tmp_path / "out" / "seeds" / "seed1" / "models" / "student_kd"
    assert seed1.train_dir("student_sft").is_relative_to(seed1.out_dir) and seed1.out_dir != book.out_dir
    assert seed1.split_seed == book.split_seed and seed1.vision_cache == book.vision_cache
    for stage1 in ("teacher_projector", "student_projector"):
        assert seed1.model_dir(stage1) == book.model_dir(stage1) and seed1.train_dir(stage1) == book.train_dir(stage1)
    assert seed1.answers_file("teacher", "vqa_lr") == book.answers_file("teacher", "vqa_lr")
    assert seed1.result_file("teacher", "vqa_lr") == book.result_file("teacher", "vqa_lr")
    assert seed1.result_file("student_kd", "vqa_lr").is_relative_to(seed1.out_dir)
