"""Deterministic, seeded train / val / test splits and per-profile subsets.

Order. Every choice below sorts keys by ``sha256(f"{seed}:{stream}:{key}")`` (:func:`hash_order`),
so a split depends only on the seed and the keys themselves, never on file order, Python's hash
seed or the platform, and adding a record does not reshuffle the others. Each choice draws from
its own ``stream`` ("split", "select", "order", ...): the same ids sorted by the same hash twice
would tie the choices together (the records a subset keeps are those with the smallest hashes,
so with one stream the final mix would put the most thinned-out task first).

Splits (:func:`assign_groups`). Records are grouped by the picture they show
(:attr:`Record.image_key`); groups, never records, are assigned, so no picture is in two
splits (RSVQA has ~100 questions per image). Within each stratum (e.g. a scene class) the
groups in hash order go ``round(n * test_fraction)`` to test, ``round(n * val_fraction)`` to
val and the rest to train (at least one group stays in train).

Subsets (:func:`select`). A profile keeps ``n`` records (``0`` = all) per stratum
(``per_class`` per scene class, ``vqa_per_type`` per question type) or in total (``captions``).
The quota is shared out over the existing splits in proportion to their sizes by largest
remainders (:func:`apportion`; a total quota then again over the strata of each split), and
the first records in hash order of each (split, stratum) cell are kept. So
subsetting never moves a record between splits and the split proportions survive.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping
from pathlib import Path

from kdlib.data.records import Record, data_error

SPLITS = ("train", "val", "test")
Splits = dict[str, list[Record]]


def hash_order(keys: Iterable[str], seed: int, stream: str) -> list[str]:
    """``keys`` sorted by ``sha256(f"{seed}:{stream}:{key}")`` (ties impossible in practice; then by key)."""
    return sorted(keys, key=lambda k: (hashlib.sha256(f"{seed}:{stream}:{k}".encode()).hexdigest(), k))


def assign_groups(strata: Mapping[str, str], val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """Split groups ``{group: stratum}`` into ``{group: "train"|"val"|"test"}``, per stratum.

    Per stratum of ``n`` groups: ``n_test = round(n * test_fraction)``, ``n_val = round(n *
    val_fraction)``, both reduced if needed so that ``n_train >= 1``.
    """
    if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction {val_fraction} + test_fraction {test_fraction} must be in [0, 1)")
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for group, stratum in strata.items():
        by_stratum[stratum].append(group)
    out = {}
    for groups in by_stratum.values():
        n = len(groups)
        n_test = min(round(n * test_fraction), n - 1)
        n_val = min(round(n * val_fraction), n - 1 - n_test)
        for i, group in enumerate(hash_order(groups, seed, "split")):
            out[group] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return out


def split_by_group(records: list[Record], group_split: Mapping[str, str], source: Path | str = "") -> Splits:
    """Records into ``{"train", "val", "test"}`` lists by their group's split (``image_key``).

    A record whose image has no split (an extra file in a dataset folder) raises :class:`DataError`
    naming the image and ``source``, the file the splits come from.
    """
    out: Splits = {name: [] for name in SPLITS}
    for rec in records:
        if rec.image_key not in group_split:
            raise data_error(rec.image_key, f"record {rec.id}",
                             f"this image has no split in {source or 'the official split'}: "
                             "remove it or restore the dataset")
        out[group_split[rec.image_key]].append(rec)
    return out


def split_records(records: list[Record], stratum: Callable[[Record], str], val_fraction: float,
                  test_fraction: float, seed: int) -> Splits:
    """Group ``records`` by image, split the groups stratified by ``stratum`` (one value per image)."""
    strata: dict[str, str] = {}
    for rec in records:
        value = stratum(rec)
        if strata.setdefault(rec.image_key, value) != value:
            raise ValueError(f"image {rec.image_key} has records in two strata "
                             f"({strata[rec.image_key]!r}, {value!r}); stratify by an image-level key")
    return split_by_group(records, assign_groups(strata, val_fraction, test_fraction, seed))


def apportion(sizes: Mapping[Hashable, int], total: int) -> dict[Hashable, int]:
    """Share ``total`` over cells in proportion to ``sizes`` (largest remainders), each <= its size.

    ``total = 0`` or ``total >= sum(sizes)`` keeps every cell whole.
    """
    whole = sum(sizes.values())
    if total <= 0 or total >= whole:
        return dict(sizes)
    exact = {k: total * s / whole for k, s in sizes.items()}
    quota = {k: int(v) for k, v in exact.items()}
    left = total - sum(quota.values())
    for k in sorted(exact, key=lambda k: (quota[k] - exact[k], str(k)))[:left]:
        quota[k] += 1
    return quota


def select(splits: Splits, n: int, stratum: Callable[[Record], str], seed: int, per_stratum: bool = True) -> Splits:
    """Keep ``n`` records per stratum (``per_stratum``) or ``n`` in total, split proportions kept.

    ``n = 0`` keeps everything. Within each (split, stratum) cell the first records by
    :func:`hash_order` of their ids are kept; the output lists are in input order.
    """
    cells: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for name in SPLITS:
        for rec in splits.get(name, []):
            cells[(name, stratum(rec))].append(rec)
    sizes = {cell: len(recs) for cell, recs in cells.items()}
    quota: dict = {}
    if per_stratum:  # n per stratum, shared over the splits
        for value in {s for _, s in cells}:
            quota.update(apportion({c: k for c, k in sizes.items() if c[1] == value}, n))
    else:  # n in total: first shared over the splits, then over the strata of each split
        per_split = apportion({name: sum(k for c, k in sizes.items() if c[0] == name) for name in SPLITS}, n)
        for name in SPLITS:
            quota.update(apportion({c: k for c, k in sizes.items() if c[0] == name}, per_split[name]))
    keep = set()
    for cell, recs in cells.items():
        by_id = {r.id: r for r in recs}
        keep.update(hash_order(by_id, seed, "select")[: quota[cell]])
    return {name: [r for r in splits.get(name, []) if r.id in keep] for name in SPLITS}


def merge(*parts: Splits) -> Splits:
    """Concatenate several ``{split: records}`` dicts split by split."""
    return {name: [r for part in parts for r in part.get(name, [])] for name in SPLITS}


def shuffled(records: list[Record], seed: int) -> list[Record]:
    """``records`` in :func:`hash_order` of their ids (deterministic mix of tasks and datasets)."""
    by_id = {r.id: r for r in records}
    if len(by_id) != len(records):
        raise ValueError("record ids are not unique")
    return [by_id[i] for i in hash_order(by_id, seed, "order")]
