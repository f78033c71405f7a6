"""Hidden states of a model on a batch, and the layer-similarity profile of Align-KD's Fig. 2.

:func:`token_masks` marks which positions of a collated batch are vision tokens (the ``N``
copies of ``<image>``) and which are text tokens (every other real token, special tokens such
as BOS excluded: BOS is an attention sink whose very large activations would swamp the mean
of a few dozen text tokens). :func:`collect_layer_states` runs a model once on the batch and
keeps its ``L + 1`` hidden states with those masks; :func:`layer_profile` turns them into the
three curves of Fig. 2 (:mod:`kdlib.analysis.similarity`), and :func:`ends_stand_out` says
whether the first and the last layer are where the features change most, as Align-KD claims.

Indexing: ``hidden_states[0]`` is the input embedding and ``hidden_states[l]`` the output of
decoder layer ``l`` (1-based). Curve (a) has one entry per layer (entry ``l - 1`` compares
the input and the output of layer ``l``); curves (b) and (c) have ``L + 1`` entries, one per
hidden state, so their first entry is what the first layer receives and their last entry is
what the last layer emits. As in every transformers LLaMA (and in the paper's MobileVLM), the
last hidden state is taken after the final RMSNorm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd
import torch

from kdlib.analysis.similarity import adjacent_layer_cosine, vision_text_cosine, vision_text_distance
from kdlib.data.collate import Collator
from kdlib.data.records import Record
from kdlib.models.feature_cache import data_processor
from kdlib.models.features import mllm_forward, num_image_tokens
from kdlib.models.io import load_for_inference
from kdlib.models.lora import unwrap

Tensor = torch.Tensor
MEASURES = ("adjacent_cosine", "vision_text_cosine", "vision_text_distance")
"""The three curves of Fig. 2 (a), (b), (c)."""
CHANGE_IS_LOW = {"adjacent_cosine": True, "vision_text_cosine": True, "vision_text_distance": False}
"""Whether a *low* value of a measure means a large change / a large vision-text gap."""


def token_masks(input_ids: Tensor, attention_mask: Tensor, image_token_id: int,
                special_ids: Sequence[int] = ()) -> tuple[Tensor, Tensor]:
    """``(vision [B, S], text [B, S])`` boolean masks of a batch.

    vision = real positions holding ``image_token_id``; text = real positions holding any
    other id except ``special_ids`` (BOS, EOS, padding). The two never overlap.
    """
    if input_ids.shape != attention_mask.shape:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask "
                         f"{tuple(attention_mask.shape)} differ in shape")
    real = attention_mask.bool()
    vision = real & (input_ids == image_token_id)
    special = torch.isin(input_ids, torch.tensor(list(special_ids), dtype=input_ids.dtype,
                                                 device=input_ids.device))
    text = real & ~vision & ~special
    return vision, text


@dataclass(frozen=True)
class LayerStates:
    """One forward's ``L + 1`` hidden states ``[B, S, D]`` (on the model's device) with its position masks ``[B, S]``."""

    hidden_states: tuple[Tensor, ...]
    mask: Tensor  # real tokens (vision and text)
    vision_mask: Tensor
    text_mask: Tensor

    @property
    def num_layers(self) -> int:
        return len(self.hidden_states) - 1


def special_token_ids(tokenizer: Any) -> list[int]:
    """The tokenizer's special ids except ``<image>`` (``bos``, ``eos``, ``pad``, ``unk``...)."""
    image = tokenizer.convert_tokens_to_ids(getattr(tokenizer, "image_token", "<image>"))
    return [i for i in tokenizer.all_special_ids if i != image]


@torch.no_grad()
def collect_layer_states(model: Any, batch: dict[str, Tensor], special_ids: Sequence[int] = ()) -> LayerStates:
    """Run ``model`` (eval mode) on a collated batch (``input_ids``, ``attention_mask``,
    ``pixel_values``) and keep its hidden states and masks."""
    model.eval()
    device = next(unwrap(model).parameters()).device
    ids, attn = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    pixels = batch["pixel_values"].to(device, unwrap(model).dtype)
    out = mllm_forward(model, ids, pixels, attn, hidden_states=True)
    vision, text = token_masks(ids, attn, unwrap(model).config.image_token_id, special_ids)
    if not vision.any(1).all() or not text.any(1).all():
        raise ValueError("every sample of the batch needs vision and text tokens")
    return LayerStates(tuple(h.detach() for h in out.hidden_states), vision | text, vision, text)


def layer_profile(states: LayerStates) -> dict[str, list[float]]:
    """The three Fig. 2 curves of one model: ``adjacent_cosine`` (``L`` values), ``vision_text_cosine``
    and ``vision_text_distance`` (``L + 1`` values each)."""
    h = states.hidden_states
    return {
        "adjacent_cosine": adjacent_layer_cosine(h, states.mask).tolist(),
        "vision_text_cosine": vision_text_cosine(h, states.vision_mask, states.text_mask).tolist(),
        "vision_text_distance": vision_text_distance(h, states.vision_mask, states.text_mask).tolist(),
    }


def mixed_records(records: Sequence[Record], n: int) -> list[Record]:
    """Up to ``n`` records taken in turn from each task (in order of first appearance), so that every
    task of the split is in the batch."""
    by_task: dict[str, list[Record]] = {}
    for record in records:
        by_task.setdefault(record.task, []).append(record)
    queues = [iter(group) for group in by_task.values()]
    chosen: list[Record] = []
    while queues and len(chosen) < n:
        for queue in list(queues):
            record = next(queue, None)
            if record is None:
                queues.remove(queue)
            elif len(chosen) < n:
                chosen.append(record)
    return chosen


def batched_profile(model: Any, batches: Iterable[dict[str, Tensor]],
                    special_ids: Sequence[int] = ()) -> dict[str, list[float]]:
    """:func:`layer_profile` over several batches, as if they were one: curve (a) is a mean over
    tokens, so each batch counts by its real tokens; (b) and (c) are means over samples, so each
    batch counts by its size. Only one batch's hidden states are alive at a time."""
    sums: dict[str, Tensor] = {}
    weights = {measure: 0.0 for measure in MEASURES}
    for batch in batches:
        states = collect_layer_states(model, batch, special_ids)
        weight = {"adjacent_cosine": float(states.mask.sum()), "vision_text_cosine": float(states.mask.shape[0]),
                  "vision_text_distance": float(states.mask.shape[0])}
        for measure, values in layer_profile(states).items():
            sums[measure] = sums.get(measure, 0.0) + torch.tensor(values, dtype=torch.float64) * weight[measure]
            weights[measure] += weight[measure]
    if not sums:
        raise ValueError("batched_profile needs at least one batch")
    return {measure: (sums[measure] / weights[measure]).tolist() for measure in MEASURES}


def model_profiles(model_dirs: dict[str, Path], records: Sequence[Record], max_length: int,
                   device: torch.device | str = "cpu", batch_size: int = 4,
                   train_dtype: str = "float32") -> dict[str, dict[str, list[float]]]:
    """The Fig. 2 profile of each saved model on ``records`` (prompt + reference answer, the training
    collator's layout: right padding, ``N`` image tokens after the system prompt), ``batch_size``
    records per forward (:func:`batched_profile`); models are loaded one at a time
    (:func:`kdlib.models.io.load_for_inference`; ``train_dtype`` is the profile's)."""
    profiles = {}
    for name, folder in model_dirs.items():
        mllm = load_for_inference(folder, device, train_dtype)
        processor = data_processor(mllm.model, mllm.image_processor)
        collate = Collator(mllm.tokenizer, processor, num_image_tokens(mllm.model), max_length)
        batches = (collate(list(records[i:i + batch_size])) for i in range(0, len(records), batch_size))
        profiles[name] = batched_profile(mllm.model, batches, special_token_ids(mllm.tokenizer))
        del mllm
    return profiles


def profile_frame(profiles: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    """Long table ``model, measure, index, depth, value`` of several models' profiles.

    ``depth`` puts models of different depth on one axis: ``index / (n - 1)`` in ``[0, 1]``
    (0 = first entry, 1 = last).
    """
    rows = []
    for model, curves in profiles.items():
        for measure, values in curves.items():
            n = len(values)
            rows += [(model, measure, i, i / max(n - 1, 1), v) for i, v in enumerate(values)]
    return pd.DataFrame(rows, columns=["model", "measure", "index", "depth", "value"])


def ends_stand_out(values: Sequence[float], change_is_low: bool) -> dict[str, bool] | None:
    """Whether the first and the last entry of a curve are more extreme than every middle entry.

    ``change_is_low``: for similarities, an end "stands out" when it is below the minimum of
    the middle entries; for distances, when it is above their maximum. ``None`` when the
    curve has no middle entry (fewer than 3 values) and the claim cannot be tested.
    """
    if len(values) < 3:
        return None
    middle = values[1:-1]
    if change_is_low:
        return {"first": values[0] < min(middle), "last": values[-1] < min(middle)}
    return {"first": values[0] > max(middle), "last": values[-1] > max(middle)}


def ends_verdicts(profiles: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    """:func:`ends_stand_out` of every model and measure: rows ``(model, measure)``, columns
    ``first``, ``last`` (``True`` / ``False``; ``None`` when the model is too shallow to tell)."""
    rows = {}
    for model, curves in profiles.items():
        for measure, values in curves.items():
            verdict = ends_stand_out(values, CHANGE_IS_LOW[measure])
            rows[(model, measure)] = verdict or {"first": None, "last": None}
    return pd.DataFrame.from_dict(rows, orient="index")


ALIGN_KD_FIG2 = {"adjacent_cosine": {"middle": (0.8, 0.9), "ends": (0.3, 0.5)},
                 "vision_text_distance": {"middle": (0.1, 0.2), "ends": (0.6, 0.8)}}
"""Ranges read from Align-KD's description of its Fig. 2 (MobileVLM V2): (a) middle layers
0.8-0.9, first and last 0.3-0.5; (c) middle 0.2-0.4, ends 1.2-1.6 on a 0-2 scale, halved here to
the 0-1 scale of :func:`kdlib.analysis.similarity.vision_text_distance`. (b) is drawn on a log
scale without values in the text."""
END_NAMES = {"adjacent_cosine": ("the first layer", "the last layer"),
             "vision_text_cosine": ("the first point (input embeddings)", "the last point (last layer's output)"),
             "vision_text_distance": ("the first point (input embeddings)", "the last point (last layer's output)")}
MEASURE_TAGS = {"adjacent_cosine": "(a)", "vision_text_cosine": "(b)", "vision_text_distance": "(c)"}


def describe_ends(curves: dict[str, list[float]]) -> str:
    """One clause per measure saying which ends stand out (:func:`ends_stand_out`), e.g.
    ``"(a) the first layer stands out, the last layer does not; ..."``."""
    clauses = []
    for measure, values in curves.items():
        first, last = END_NAMES[measure]
        verdict = ends_stand_out(values, CHANGE_IS_LOW[measure])
        if verdict is None:
            text = f"cannot be judged ({len(values)} values, no middle one)"
        else:
            text = (f"{first} {'stands' if verdict['first'] else 'does not stand'} out, "
                    f"{last} {'does' if verdict['last'] else 'does not'}")
        clauses.append(f"{MEASURE_TAGS[measure]} {text}")
    return "; ".join(clauses)


def claim_verdict(curves: dict[str, list[float]]) -> str:
    """Whether a model's curves show Align-KD's pattern: an end shows it when it stands out
    (:func:`ends_stand_out`) in every measure that can be judged."""
    verdicts = [v for m, values in curves.items() if (v := ends_stand_out(values, CHANGE_IS_LOW[m])) is not None]
    if not verdicts:
        return "cannot be judged: the model is too shallow to have middle layers"
    first, last = all(v["first"] for v in verdicts), all(v["last"] for v in verdicts)
    if first and last:
        return "shows the pattern at both ends"
    if first:
        return "shows the pattern at the first layer only"
    if last:
        return "shows the pattern at the last layer only"
    return "does not show the pattern at either end"


def _part_text(values: Sequence[float], part: str) -> str:
    """``"0.25"`` for the first / last point, ``"0.80-0.91"`` for the middle points (``"-"``: none)."""
    if part != "middle":
        return f"{values[0 if part == 'first' else -1]:.2f}"
    middle = values[1:-1]
    return f"{min(middle):.2f}-{max(middle):.2f}" if middle else "-"


def compare_with_paper(profiles: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    """First point, range ``"lo-hi"`` of the middle points and last point of curves (a) and (c) of
    each model, beside the ranges Align-KD gives (:data:`ALIGN_KD_FIG2`, its "ends" for both ends)."""
    rows = {}
    for measure, paper in ALIGN_KD_FIG2.items():
        for part in ("first", "middle", "last"):
            low, high = paper["middle" if part == "middle" else "ends"]
            row = {"Align-KD Fig. 2 (paper)": f"{low:.2f}-{high:.2f}"}
            for model, curves in profiles.items():
                row[model] = _part_text(curves[measure], part)
            rows[f"{MEASURE_TAGS[measure]} {part}"] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def shift_towards(profiles: dict[str, dict[str, list[float]]], measure: str, index: int = 0,
                  before: str = "student_sft", after: str = "student_kd", target: str = "teacher") -> str:
    """``"closer to"``, ``"further from"`` or ``"as far from"``: how point ``index`` of ``measure`` moved
    from model ``before`` to model ``after``, relative to model ``target``'s value."""
    b, a, t = (profiles[m][measure][index] for m in (before, after, target))
    gap_before, gap_after = abs(b - t), abs(a - t)
    if gap_after < gap_before:
        return "closer to"
    return "further from" if gap_after > gap_before else "as far from"
