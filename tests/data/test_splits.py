"""Splits: deterministic, seeded, stratified, grouped by image; profile subsets keep the proportions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from kdlib.data import Record, load_study, read_ucm_captions
from kdlib.data.splits import SPLITS, apportion, assign_groups, hash_order, select, shuffled, split_records
from kdlib.profiles import get_profile


def _records(n_images: int, per_image: int, classes: int) -> list[Record]:
    return [Record(id=f"img{i}/q{j}", task="vqa", image=Path(f"/x/img{i}.png"), question="q", answer="a",
                   meta={"dataset": "toy", "cls": f"c{i % classes}", "type": f"t{j % 3}"})
            for i in range(n_images) for j in range(per_image)]


def test_hash_order_depends_on_keys_seed_and_stream_only():
    keys = [f"k{i}" for i in range(50)]
    assert hash_order(keys, 0, "a") == hash_order(keys[::-1], 0, "a")
    assert hash_order(keys, 0, "a") != hash_order(keys, 1, "a")
    assert hash_order(keys, 0, "a") != hash_order(keys, 0, "b")
    assert sorted(hash_order(keys, 3, "a")) == sorted(keys)


def test_mixed_order_does_not_follow_the_subset_choice():
    """A task thinned from 2000 records to 20 must not crowd the front of the mixed order."""
    def records(task: str, n: int) -> list[Record]:
        return [Record(id=f"{task}/{i}", task=task, image=Path(f"/x/{task}{i}.png"), question="q", answer="a",
                       meta={}) for i in range(n)]
    kept = select({"train": records("vqa", 2000)}, 20, lambda r: r.task, seed=0)["train"]
    mixed = shuffled(kept + records("caption", 20), seed=0)
    positions = [i for i, r in enumerate(mixed) if r.task == "vqa"]
    assert len(positions) == 20
    assert 12 <= sum(positions) / len(positions) <= 27  # mean position of 20 of 40 at random: 19.5 +- 2.6


def test_assign_groups_is_stratified():
    strata = {f"g{i}": f"c{i % 4}" for i in range(200)}  # 50 groups per stratum
    split = assign_groups(strata, val_fraction=0.1, test_fraction=0.2, seed=0)
    counts = Counter((strata[g], s) for g, s in split.items())
    for c in {f"c{i}" for i in range(4)}:
        assert (counts[(c, "train")], counts[(c, "val")], counts[(c, "test")]) == (35, 5, 10)
    assert assign_groups(strata, 0.1, 0.2, seed=0) == split
    assert assign_groups(strata, 0.1, 0.2, seed=1) != split


def test_assign_groups_keeps_one_train_group():
    split = assign_groups({"a": "s", "b": "s"}, val_fraction=0.4, test_fraction=0.5, seed=0)
    assert Counter(split.values())["train"] == 1


@pytest.mark.parametrize("sizes, total", [({"a": 80, "b": 10, "c": 10}, 10), ({"a": 7, "b": 3}, 5),
                                          ({"a": 5, "b": 5, "c": 5}, 4), ({"a": 2, "b": 1}, 10)])
def test_apportion_matches_exact_shares(sizes, total):
    quota = apportion(sizes, total)
    whole = sum(sizes.values())
    assert sum(quota.values()) == min(total, whole)
    for k, size in sizes.items():
        exact = min(total, whole) * size / whole
        assert quota[k] <= size and abs(quota[k] - exact) < 1


def test_split_records_groups_images():
    records = _records(n_images=40, per_image=6, classes=4)
    splits = split_records(records, lambda r: r.meta["cls"], 0.1, 0.2, seed=0)
    images = {name: {r.image for r in splits[name]} for name in SPLITS}
    assert not (images["train"] & images["val"] or images["train"] & images["test"] or images["val"] & images["test"])
    assert sum(len(v) for v in splits.values()) == len(records)
    with pytest.raises(ValueError, match="two strata"):
        split_records(records, lambda r: r.meta["type"], 0.1, 0.2, seed=0)


def test_select_per_stratum_and_total():
    records = _records(n_images=40, per_image=6, classes=4)
    splits = split_records(records, lambda r: r.meta["cls"], 0.1, 0.2, seed=0)
    kept = select(splits, 12, lambda r: r.meta["type"], seed=0)
    assert Counter(r.meta["type"] for name in SPLITS for r in kept[name]) == {"t0": 12, "t1": 12, "t2": 12}
    for name in SPLITS:  # subsets never move records between splits
        assert {r.id for r in kept[name]} <= {r.id for r in splits[name]}
    total = select(splits, 30, lambda r: r.meta["cls"], seed=0, per_stratum=False)
    sizes = {name: len(splits[name]) for name in SPLITS}
    assert {name: len(total[name]) for name in SPLITS} == apportion(sizes, 30)
    assert select(splits, 0, lambda r: r.meta["cls"], seed=0) == splits


def test_study_splits_are_disjoint_and_reproducible(tiny_study, data_root):
    seen: dict[str, str] = {}
    for name in SPLITS:
        for rec in tiny_study.split(name):
            assert seen.setdefault(rec.image_key, name) == name, f"{rec.image_key} in two splits"
    again = load_study(get_profile("tiny"), data_root, seed=0, check_images=False)
    assert all([r.id for r in again.split(n)] == [r.id for r in tiny_study.split(n)] for n in SPLITS)
    other = load_study(get_profile("tiny"), data_root, seed=1, check_images=False)
    assert {r.id for r in other.test} != {r.id for r in tiny_study.test}


def test_study_uses_the_profile_sizes(tiny_study, data_root):
    data = get_profile("tiny").data
    everything = tiny_study.train + tiny_study.val + tiny_study.test
    per_class = Counter((r.dataset, r.answer) for r in everything if r.task == "scene")
    assert set(per_class.values()) == {data.per_class}
    per_type = Counter((r.dataset, r.meta["type"]) for r in everything if r.task == "vqa")
    assert set(per_type.values()) == {data.vqa_per_type}
    assert sum(r.task == "caption" for r in everything) == data.captions
    # AID has no official split: its classes follow the profile's fractions (7 / 1 / 2 of 10)
    aid = Counter(split for split in SPLITS for r in tiny_study.split(split) if r.dataset == "aid")
    n = len(tiny_study.classes["aid"]) * data.per_class
    assert aid["test"] == round(n * data.test_fraction) and aid["val"] == round(n * data.val_fraction)
    # UCMerced images follow UCM-captions' official split, for all three UCMerced tasks
    official = {r.image: r.meta["split"] for r in read_ucm_captions(data_root, check_images=False)}
    ucm = {name: [r for r in tiny_study.split(name) if r.image in official] for name in SPLITS}
    assert {r.dataset for name in SPLITS for r in ucm[name]} == {"ucmerced", "rsivqa_ucm", "ucm_captions"}
    assert all(official[r.image] == name for name in SPLITS for r in ucm[name])


def test_test_all_tests_every_unseen_picture_and_keeps_the_training_subsets(tiny_study, data_root):
    from kdlib.data.study import split_datasets

    profile = get_profile("tiny", {"data.test_all": "true"})
    whole = load_study(profile, data_root, seed=0, check_images=False)
    for name in ("train", "val"):
        assert [r.id for r in whole.split(name)] == [r.id for r in tiny_study.split(name)]
    parts = split_datasets(profile.data, data_root, 0)
    trained = {r.image_key for name in ("train", "val") for r in whole.split(name)}
    unseen = {r.id for splits in parts.values() for name in SPLITS for r in splits[name] if r.image_key not in trained}
    assert {r.id for r in whole.test} == unseen
    assert {r.id for splits in parts.values() for r in splits["test"]} < unseen  # every test split, and more
    assert not trained & {r.image_key for r in whole.test}
    # the scene images the subsets leave out of train and val are tested: more than the official 10 of 100
    # UCMerced images per class, less the class's pictures that any task trains or validates on
    ucmerced = Counter(r.answer for r in whole.test if r.dataset == "ucmerced")
    shown = Counter(r.answer for name in SPLITS for r in parts["ucmerced"][name] if r.image_key in trained)
    assert len(ucmerced) == 21 and all(10 < ucmerced[c] == 100 - shown[c] for c in ucmerced)


def test_test_all_must_be_a_bool():
    from dataclasses import replace

    with pytest.raises(ValueError, match="data.test_all"):
        replace(get_profile("tiny").data, test_all=1)
    with pytest.raises(ValueError, match="expected true/false"):
        get_profile("tiny", {"data.test_all": "all"})
