"""The study's real data: readers, splits, GeoChat prompts, instruction records, batches.

Entry points: :func:`load_study` (every task for a profile, split and subset), :class:`Collator`
(model inputs), :func:`pretrain_texts` (``D_PT`` of Eq. 7), the readers ``read_*`` and
:mod:`kdlib.data.download` (optional official downloads).
"""

from kdlib.data.captions import read_ucm_captions
from kdlib.data.collate import IGNORE_INDEX, Collator
from kdlib.data.dota import DotaObject, read_dota
from kdlib.data.instructions import load_geochat_instruct, save_conversations, to_conversation
from kdlib.data.pretrain import pretrain_texts
from kdlib.data.prompts import (
    CAPTION_QUERY, SCENE_SUFFIX, SYSTEM, VQA_SUFFIX, grounding_query, identify_query, refer_query,
    render_conversation, render_turn, scene_query, vqa_query,
)
from kdlib.data.records import TASKS, DataError, Record, check_record_images, load_image
from kdlib.data.regions import TileSpec, dota_region_records
from kdlib.data.scene import UCM_SPACED, aid_spaced, read_aid, read_ucmerced
from kdlib.data.splits import SPLITS, assign_groups, select, split_records
from kdlib.data.study import Study, corpus_texts, load_study
from kdlib.data.vqa import RSIVQA_TYPES, RSVQA_TYPES, read_rsivqa, read_rsvqa

__all__ = [
    "CAPTION_QUERY", "IGNORE_INDEX", "RSIVQA_TYPES", "RSVQA_TYPES", "SCENE_SUFFIX", "SPLITS", "SYSTEM", "TASKS",
    "UCM_SPACED", "VQA_SUFFIX", "Collator", "DataError", "DotaObject", "Record", "Study", "TileSpec",
    "aid_spaced", "assign_groups", "check_record_images", "corpus_texts", "dota_region_records",
    "grounding_query", "identify_query", "load_geochat_instruct", "load_image", "load_study", "pretrain_texts",
    "read_aid", "read_dota", "read_rsivqa", "read_rsvqa", "read_ucm_captions", "read_ucmerced", "refer_query",
    "render_conversation", "render_turn", "save_conversations", "scene_query", "select", "split_records",
    "to_conversation", "vqa_query",
]
