"""The plain-text stream ``D_PT`` of the language-modelling term (core paper Eq. 7).

Eq. 7 adds ``L_PT = -E_{d ~ D_PT} log q_theta(d)`` (token cross-entropy, no image) on a
"pre-training corpus" so the student keeps its language ability while it is distilled
(MiniLLM's ``pt_loss``; ``docs/methods.md`` §1.5).

What ``D_PT`` is here, for every profile: real remote-sensing text from the *train* split of
the study only (so no evaluation text leaks into training), text-only:

- every sentence (5 per image) of the UCM-captions images in the official train split;
- RSIVQA-UCM question-answer pairs on those images, written ``"{question} {answer}."``;
- RSVQA-LR and -HR question-answer pairs on the train images of :func:`load_study`'s split.

The paper's ``D_PT`` (the LLM's pre-training corpus with GeoChat's captions, "including vision
and text") is not available offline; for ``paper`` the same stream stands in, and a user with
the real corpus passes it to the trainer instead. Order: seeded hash order, deterministic.
"""

from __future__ import annotations

from pathlib import Path

from kdlib.data.records import Record
from kdlib.data.splits import hash_order
from kdlib.data.study import split_datasets
from kdlib.paths import resolve_data_root
from kdlib.profiles import Profile

PT_DATASETS = ("ucm_captions", "rsivqa_ucm", "rsvqa_lr", "rsvqa_hr")


def record_texts(record: Record) -> list[str]:
    """Plain texts of one record: all reference captions, or ``"{question} {answer}."`` for VQA."""
    if record.task == "caption":
        return list(record.meta.get("references") or [record.answer])
    if record.task == "vqa":
        return [f"{record.meta['raw_question'].strip()} {record.answer}."]
    raise ValueError(f"record {record.id}: no plain-text form for task {record.task!r}")


def pretrain_texts(profile: Profile, data_root: Path | str | None = None, seed: int = 0,
                   max_texts: int = 0) -> list[str]:
    """``D_PT`` for ``profile`` (module docstring): train-split texts, hash-ordered, ``max_texts`` (0 = all)."""
    parts = split_datasets(profile.data, resolve_data_root(data_root), seed)
    texts = {}
    for name in PT_DATASETS:
        for rec in parts[name]["train"]:
            for i, text in enumerate(record_texts(rec)):
                texts[f"{rec.id}#{i}"] = text
    order = hash_order(texts, seed, "pretrain")
    return [texts[k] for k in (order[:max_texts] if max_texts > 0 else order)]
