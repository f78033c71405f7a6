"""Text-only distillation: a plain causal-LM teacher into a causal-LM student, on prompt/response records.

The same run as the multimodal study (:func:`kdlib.train.distill.distill_records`: objective,
teacher-mixed sampler, chunked losses, checkpoints, ``accelerate launch``) without image
features: the records are :class:`~kdlib.data.text_pairs.TextPair` and the collator a
:class:`~kdlib.data.text_pairs.TextCollator`. Numbers (steps, batch, learning rate, sampling,
precision, LoRA) come from a profile, as for the study. The ``paper`` method's projector term
(Eq. 4-5) needs images, so a text-only ``paper`` run leaves it out (``--ablate align``, recorded
in its run name); ``align_kd`` and ``switch_kd`` need images and are refused.

``D_PT`` (the LM term, Eq. 7) defaults to the records' responses.

Layout of ``run_dir``: ``config.json``, ``metrics.jsonl``, ``checkpoints/`` while training, and the
trained student in ``model/`` (a plain ``AutoModelForCausalLM`` folder with its tokenizer).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from accelerate import PartialState

from kdlib.data.text_pairs import TextCollator, TextPair, load_text_pairs
from kdlib.models.causal import check_pair, load_causal_pair
from kdlib.models.io import save_mllm
from kdlib.profiles import Profile, get_profile
from kdlib.train.config import TrainConfig
from kdlib.train.distill import distill_records
from kdlib.train.harness import TrainResult

NEEDS_IMAGES = ("align_kd", "switch_kd")


def text_config(profile: Profile, method: str, ablate: Iterable[str] = (), seed: int = 0, progress: bool = True,
                **changes: Any) -> TrainConfig:
    """The :class:`TrainConfig` of a text-only run of ``method`` (``paper`` without its projector term)."""
    if method in NEEDS_IMAGES:
        raise ValueError(f"method {method!r} distils visual features and needs a multimodal pair; "
                         f"text-only methods: paper, forward_kl, reverse_kl")
    ablated = set(ablate) | ({"align"} if method == "paper" else set())
    return TrainConfig.from_profile(profile, method, sorted(ablated), seed=seed, progress=progress, **changes)


def distill_text(teacher: str | Path | Any, student: str | Path | Any, data: Any, run_dir: str | Path,
                 profile: Profile | str = "tiny", method: str = "paper", ablate: Iterable[str] = (),
                 pt_texts: Sequence[str] | None = None, tokenizer: Any = None, seed: int = 0, progress: bool = True,
                 resume: bool = False, device: str | torch.device | None = None, **changes: Any) -> TrainResult:
    """Distil a causal-LM ``teacher`` into ``student`` on ``data`` and save the student in ``run_dir/model``.

    ``teacher`` / ``student``: hub ids or folders (loaded in float32 after the same-tokenizer
    check), or loaded models together with their shared ``tokenizer``. ``data``: a JSONL path, a
    ``datasets`` dataset or rows with ``prompt`` and ``response``, or :class:`TextPair` objects.
    ``changes`` override :class:`TrainConfig` fields (e.g. ``steps=10``, ``dtype="bfloat16"``).
    """
    profile = get_profile(profile) if isinstance(profile, str) else profile
    cfg = text_config(profile, method, ablate, seed, progress, **changes)
    records: list[TextPair] = load_text_pairs(data)
    if isinstance(teacher, (str, Path)) or isinstance(student, (str, Path)):
        pair = load_causal_pair(teacher, student)
        teacher, student, tokenizer = pair.teacher, pair.student, pair.tokenizer
    elif tokenizer is None:
        raise ValueError("distill_text: pass the shared tokenizer with loaded teacher and student models")
    else:
        check_pair(teacher, student, type(teacher).__name__, type(student).__name__)
    texts = [r.response for r in records] if pt_texts is None else list(pt_texts)
    run_dir = Path(run_dir)

    def collate(mode: str) -> TextCollator:
        return TextCollator(tokenizer, cfg.max_length, mode)

    result = distill_records(student, teacher, tokenizer, records, collate, cfg, profile, run_dir, texts, resume,
                             device)
    state = PartialState()
    if state.is_main_process:
        save_mllm(run_dir / "model", result.model, tokenizer, None)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    state.wait_for_everyone()
    return result
