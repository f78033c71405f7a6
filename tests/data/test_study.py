"""The study object: sizes summary, classes, mixed order, tokenizer corpus."""

from __future__ import annotations

import json

from kdlib.data import TASKS, corpus_texts
from kdlib.data.prompts import SYSTEM
from kdlib.data.splits import SPLITS


def test_summary_counts_every_record(tiny_study):
    table = tiny_study.summary()
    for name in SPLITS:
        assert table[name].sum() == len(tiny_study.split(name))
    assert set(table["task"]) == set(TASKS)
    assert (table["total"] == table[list(SPLITS)].sum(axis=1)).all()
    assert len({r.id for name in SPLITS for r in tiny_study.split(name)}) == table["total"].sum()


def test_classes_are_geochat_names(tiny_study, data_root):
    for dataset, bench in (("ucmerced", "UCmerced_geochat_7b.jsonl"), ("aid", "AID_geochat_7b.jsonl")):
        truth = {json.loads(l)["ground_truth"] for l in (data_root / "geochat_bench" / bench).read_text().splitlines()}
        assert set(tiny_study.classes[dataset]) == truth


def test_tasks_are_mixed(tiny_study):
    """Each task's mean position in train is that of a uniform random order (within 4 standard errors)."""
    n_total = len(tiny_study.train)
    for task in {r.task for r in tiny_study.train}:
        positions = [i for i, r in enumerate(tiny_study.train) if r.task == task]
        spread = n_total / (12 * len(positions)) ** 0.5
        assert abs(sum(positions) / len(positions) - (n_total - 1) / 2) <= 4 * spread, task


def test_corpus_texts(tiny_study):
    texts = corpus_texts(tiny_study)
    assert len(texts) == len(tiny_study.train)
    assert all(t.startswith(SYSTEM) and t.endswith("</s>") and "<image>" in t for t in texts)
