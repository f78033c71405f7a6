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
    first = [r.task for r in tiny_study.train[:60]]
    assert len(set(first)) >= 4


def test_corpus_texts(tiny_study):
    texts = corpus_texts(tiny_study)
    assert len(texts) == len(tiny_study.train)
    assert all(t.startswith(SYSTEM) and t.endswith("</s>") and "<image>" in t for t in texts)
