"""The study's data: every task and dataset, split and subset for a profile (:func:`load_study`).

Splits (all grouped by picture, so no image is in two splits, across tasks too):

- UCMerced images (scene UCMerced, UCM-captions, RSIVQA) follow UCM-captions' official split
  (1,680 / 210 / 210 images, 80 / 10 / 10 per class), the only official split of those images.
- AID: stratified by class with ``profile.data.val_fraction`` / ``test_fraction``.
- RSVQA-LR / HR: by image (each carries ~100 questions of every type), same fractions.
- DOTA tiles (refer / grounding / region captions, :mod:`kdlib.data.regions`): by tile.

Subsets (:func:`kdlib.data.splits.select`, split proportions kept, ``0`` = all):
``per_class`` images per scene class, ``vqa_per_type`` questions per type and dataset (RSVQA,
RSIVQA, and per DOTA task), ``captions`` UCM-captions images (class-balanced). RSIVQA questions
with an empty object in the source ("how many  in the picture?") are left out. With
``profile.data.test_all`` the test split holds every record whose picture no train or val record
shows (:func:`unseen_records`): each dataset's whole test split, and the records of its train and val
splits that the subsets left out when no other task trains or validates on their picture (UCMerced
and AID images beyond ``per_class``). Train and val keep the records of their subsets (the same
records as without it): the test split is as large as the data allows, and no training run changes.

Within each split records are mixed in seeded hash order. Image files are verified only for
the records kept (``check_images``), which keeps ``tiny`` fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kdlib.data.captions import CAPTIONS_FILE, read_ucm_captions
from kdlib.data.dota import read_dota
from kdlib.data.prompts import DEFAULT_EOS, chat_text
from kdlib.data.records import Record, check_record_images
from kdlib.data.regions import dota_region_records
from kdlib.data.scene import class_names, read_aid, read_ucmerced
from kdlib.data.splits import SPLITS, Splits, merge, select, shuffled, split_by_group, split_records
from kdlib.data.vqa import read_rsivqa, read_rsvqa
from kdlib.paths import resolve_data_root
from kdlib.profiles import DataSpec, Profile


@dataclass(frozen=True)
class Study:
    """The records of one profile, per split, plus the class lists of the scene datasets."""

    train: list[Record]
    val: list[Record]
    test: list[Record]
    classes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    profile: str = ""
    seed: int = 0

    def split(self, name: str) -> list[Record]:
        """The records of split ``name`` (train, val or test)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of {SPLITS}")
        return getattr(self, name)

    def summary(self) -> pd.DataFrame:
        """Records per (task, dataset) and split, with totals; one row per pair, sorted."""
        frame = pd.DataFrame([(r.task, r.dataset, name) for name in SPLITS for r in self.split(name)],
                             columns=["task", "dataset", "split"])
        table = pd.crosstab([frame["task"], frame["dataset"]], frame["split"])
        table = table.reindex(columns=list(SPLITS), fill_value=0)
        table["total"] = table.sum(axis=1)
        return table.reset_index()


def _dataset(record: Record) -> str:
    """One stratum per dataset (RSVQA, DOTA tiles: every image carries every question type)."""
    return record.dataset


def split_datasets(data: DataSpec, root: Path, seed: int) -> dict[str, Splits]:
    """Every dataset's records split (no subsetting); keys are ``Record.dataset`` names."""
    captions = read_ucm_captions(root, check_images=False)
    ucm_split = {r.image_key: r.meta["split"] for r in captions}
    rsivqa = [r for r in read_rsivqa(root, check_images=False) if not r.meta["empty_object"]]
    fractions = {"val_fraction": data.val_fraction, "test_fraction": data.test_fraction, "seed": seed}
    regions = dota_region_records(read_dota(root, check_images=False), seed=seed)
    return {
        "ucmerced": split_by_group(read_ucmerced(root, check_images=False), ucm_split, root / CAPTIONS_FILE),
        "aid": split_records(read_aid(root, check_images=False), lambda r: r.meta["class_dir"], **fractions),
        "rsvqa_lr": split_records(read_rsvqa(root, "lr", check_images=False), _dataset, **fractions),
        "rsvqa_hr": split_records(read_rsvqa(root, "hr", check_images=False), _dataset, **fractions),
        "rsivqa_ucm": split_by_group(rsivqa, ucm_split, root / CAPTIONS_FILE),
        "ucm_captions": split_by_group(captions, ucm_split),
        "dota": split_records(regions, _dataset, **fractions),
    }


def unseen_records(parts: dict[str, Splits], chosen: Splits) -> list[Record]:
    """Every record of ``parts`` (all datasets, all splits) whose picture no ``chosen`` train or val
    record shows: the test split of ``data.test_all``. It holds every test split whole (splits are
    disjoint by picture) and the left-out train / val records of pictures that nothing trains on."""
    shown = {r.image_key for name in ("train", "val") for r in chosen[name]}
    return [r for splits in parts.values() for name in SPLITS for r in splits[name] if r.image_key not in shown]


def _select(name: str, splits: Splits, data: DataSpec, seed: int) -> Splits:
    if name in ("ucmerced", "aid"):
        return select(splits, data.per_class, lambda r: r.meta["class_dir"], seed)
    if name == "ucm_captions":
        return select(splits, data.captions, lambda r: r.meta["class_dir"], seed, per_stratum=False)
    if name == "dota":
        return select(splits, data.vqa_per_type, lambda r: r.task, seed)
    return select(splits, data.vqa_per_type, lambda r: r.meta["type"], seed)


def _check_disjoint(splits: Splits) -> None:
    seen: dict[str, str] = {}
    for name in SPLITS:
        for rec in splits[name]:
            if seen.setdefault(rec.image_key, name) != name:
                raise AssertionError(f"image {rec.image_key} is in both {seen[rec.image_key]} and {name}")


def load_study(profile: Profile, data_root: Path | str | None = None, seed: int = 0,
               check_images: bool = True) -> Study:
    """All tasks of the study for ``profile``: split, subset, mixed (module docstring)."""
    root = resolve_data_root(data_root)
    parts = split_datasets(profile.data, root, seed)
    chosen = merge(*(_select(name, splits, profile.data, seed) for name, splits in parts.items()))
    if profile.data.test_all:
        chosen["test"] = unseen_records(parts, chosen)
    _check_disjoint(chosen)
    if check_images:
        check_record_images([r for name in SPLITS for r in chosen[name]])
    classes = {name: class_names(parts[name]["train"] + parts[name]["val"] + parts[name]["test"])
               for name in ("ucmerced", "aid")}
    return Study(**{name: shuffled(chosen[name], seed) for name in SPLITS},
                 classes=classes, profile=profile.name, seed=seed)


def corpus_texts(study: Study, splits: tuple[str, ...] = ("train",), eos: str = DEFAULT_EOS) -> list[str]:
    """The chat texts (system + prompt + answer + eos, :func:`chat_text`) of the given splits.

    Meant for fitting a tokenizer (the ``tiny`` BPE). Train only by default, so no test answer
    shapes the vocabulary; every prompt wording, class list and answer form appears in train.
    """
    return [chat_text(r.question, r.answer, eos) for name in splits for r in study.split(name)]

