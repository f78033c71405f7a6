"""D_PT (Eq. 7): real train-split text only, deterministic."""

from __future__ import annotations

from kdlib.data import pretrain_texts, read_ucm_captions
from kdlib.data.pretrain import PT_DATASETS
from kdlib.data.study import split_datasets
from kdlib.profiles import get_profile


def _pairs(records) -> set[str]:
    return {f"{r.meta['raw_question'].strip()} {r.answer}." for r in records if r.task == "vqa"}


def test_pretrain_texts_are_train_only_and_deterministic(data_root):
    profile = get_profile("tiny")
    texts = pretrain_texts(profile, data_root)
    assert pretrain_texts(profile, data_root, max_texts=50) == texts[:50]  # deterministic, cut at max_texts
    # captions: exactly the sentences of the official train images
    captions = read_ucm_captions(data_root, check_images=False)
    train = {s for r in captions if r.meta["split"] == "train" for s in r.meta["references"]}
    held_out = {s for r in captions if r.meta["split"] != "train" for s in r.meta["references"]} - train
    assert train <= set(texts) and not held_out & set(texts)
    # VQA: every pair of a train image is there; pairs seen only on val / test images are not
    parts = split_datasets(profile.data, data_root, seed=0)
    vqa_train = set().union(*(_pairs(parts[d]["train"]) for d in PT_DATASETS))
    vqa_other = set().union(*(_pairs(parts[d][s]) for d in PT_DATASETS for s in ("val", "test"))) - vqa_train
    assert vqa_train <= set(texts) and vqa_other and not vqa_other & set(texts)
    assert set(texts) == train | vqa_train
