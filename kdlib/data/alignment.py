"""The image descriptions of LLaVA's stage 1 (feature alignment), made from the study's own records.

LLaVA trains its projector first, LLM frozen, on image-caption pairs (one brief-description
instruction, the caption as the answer), so that the visual tokens land where the LLM reads
them before instruction tuning starts. kdlib's ``small`` models start with a random projector (a
GeoChat model inherits LLaVA-1.5's aligned one), and the study's data carries two kinds of
whole-image description: the UCM-captions sentences and the scene labels. Each becomes one
pair ``(CAPTION_QUERY, description)`` on the same picture; VQA, referring, grounding and region
records describe parts or facts of a picture and are left out. Only the split it is given is
read, so the test pictures stay unseen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from kdlib.data.prompts import CAPTION_QUERY
from kdlib.data.records import Record

DESCRIBING_TASKS = ("scene", "caption")
"""Tasks whose answer describes the whole picture: a class name or a caption sentence."""


def alignment_records(records: Sequence[Record]) -> list[Record]:
    """The stage-1 pairs of ``records``: every scene and caption record asked :data:`CAPTION_QUERY`,
    its answer (class name or caption) kept, task ``caption``; other tasks dropped, order kept."""
    return [replace(r, id=f"{r.id}:describe", task="caption", question=CAPTION_QUERY)
            for r in records if r.task in DESCRIBING_TASKS]
