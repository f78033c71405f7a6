"""Generation-based evaluation of the study's models.

:func:`evaluate_model` answers one task's records with one model (greedy, GeoChat's prompts,
:mod:`kdlib.evaluate.generate`) and writes the answers as GeoChat-Bench JSONL
(:mod:`kdlib.evaluate.tasks`). :func:`evaluate_study` does it for the trained models of a run and
scores every file with :func:`~kdlib.evaluate.score.score_file`; the models, answer files, DOTA
crops and results lie where :class:`kdlib.run.RunContext` puts them (``model_dir``,
``answers_file``, ``crops_dir``, ``result_file``). :func:`score_geochat_7b` scores the real
GeoChat-7B answer files of ``<data_root>/geochat_bench`` (see ``docs/data.md``) as the model
``geochat_7b_real``.

A result is reused, not regenerated, when it was written after the model was saved, for the same
profile, seed, test records (sha256 of their ids) and token budget, and its answer file is still
there: rebuilding the ``small`` book re-reads an evaluation instead of repeating it
(``kdlib evaluate --no-reuse`` regenerates).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from kdlib.data.records import Record, records_digest
from kdlib.data.study import Study
from kdlib.evaluate.tasks import TASK_NAMES, answer_line, eval_task, write_crops
from kdlib.files import write_json, write_jsonl
from kdlib.models.io import LoadedMLLM, load_for_inference
from kdlib.run import RunContext

MODELS = ("student_sft", "teacher", "student_kd")
"""The three models of the study, in the book's order (baseline, teacher, distilled)."""
REAL_GEOCHAT = "geochat_7b_real"
GEOCHAT_7B_FILES = {
    "scene_ucmerced": "UCmerced_geochat_7b.jsonl",
    "scene_aid": "AID_geochat_7b.jsonl",
    "referring": "referring_geochat_7b.jsonl",
    "region_caption": "region_caption_geochat_7b.jsonl",
}
"""The real GeoChat-7B answer files of ``<data_root>/geochat_bench`` (``docs/data.md``)."""


@dataclass(frozen=True)
class AnswerRun:
    """One written answer file: where, how many answers, the token budget and the time it took."""

    path: Path
    n: int
    max_new_tokens: int
    seconds: float


def evaluate_model(model: LoadedMLLM | str | Path, records: Sequence[Record], task: str, answers_path: str | Path, *,
                   image_dir: str | Path | None = None, max_new_tokens: int | None = None, batch_size: int = 16,
                   device: Any = None, dtype: str = "float32", progress: bool = True) -> AnswerRun:
    """Answer ``records`` of evaluation ``task`` with ``model`` and write the answer file.

    ``model``: a :class:`~kdlib.models.io.LoadedMLLM` or a model folder (loaded on ``device`` by
    :func:`~kdlib.models.io.load_for_inference`, ``dtype`` the profile's). ``max_new_tokens``
    None: :func:`~kdlib.evaluate.generate.answer_budget` of these records' references. The DOTA
    tasks also write their crops to ``image_dir`` (default: ``images/`` beside the answers).
    """
    from kdlib.evaluate.generate import answer_budget, generate_answers

    spec = eval_task(task)
    if not records:
        raise ValueError(f"no records to evaluate for task {task}")
    spec.check(records)
    mllm = model if isinstance(model, LoadedMLLM) else load_for_inference(model, device, dtype)
    answers_path = Path(answers_path)
    references = [r.answer for r in records]
    budget = max_new_tokens if max_new_tokens is not None else answer_budget(references, mllm.tokenizer)
    start = time.perf_counter()
    answers = generate_answers(mllm, records, budget, batch_size, progress, desc=f"{answers_path.parent.name}/{task}")
    lines = [answer_line(spec, record, answer) for record, answer in zip(records, answers)]
    if spec.crops:
        write_crops(records, Path(image_dir) if image_dir else answers_path.parent / "images")
    write_jsonl(answers_path, lines)
    return AnswerRun(answers_path, len(lines), budget, time.perf_counter() - start)


def score_answers(task: str, path: str | Path, image_dir: str | Path | None = None) -> dict[str, Any]:
    """:func:`~kdlib.evaluate.score.score_file` of an answer file of evaluation ``task``.

    Referring files are scaled with the sizes of the images in ``image_dir``; without it the
    scorer's per-dataset sizes apply (the real GeoChat-Bench files).
    """
    from kdlib.evaluate.score import score_file

    spec = eval_task(task)
    return score_file(spec.score_task, path, image_dir=image_dir if spec.score_task == "referring" else None)


def answers_path(ctx: RunContext, model: str, task: str) -> Path:
    """The answer file of ``model`` on ``task``: the run's (``ctx.answers_file``), or the real GeoChat-7B file."""
    if model == REAL_GEOCHAT:
        if task not in GEOCHAT_7B_FILES:
            raise ValueError(f"no real GeoChat-7B answers for {task}; they exist for {', '.join(GEOCHAT_7B_FILES)}")
        return Path(ctx.data_root) / "geochat_bench" / GEOCHAT_7B_FILES[task]
    return ctx.answers_file(model, task)


def write_result(ctx: RunContext, model: str, task: str, result: dict[str, Any], **provenance: Any) -> dict[str, Any]:
    """Write ``ctx.result_file(model, task)``: ``result`` plus ``"provenance"`` (the run
    context's, the model, the task and ``provenance``); return it as read back (plain JSON types)."""
    path = ctx.result_file(model, task)
    record = {**result, "provenance": {**ctx.provenance(), "model": model, "task": task, **provenance}}
    write_json(path, record)
    return json.loads(path.read_text())


def read_result(ctx: RunContext, model: str, task: str, producer: str = "scene_classification") -> dict[str, Any]:
    """A result written by :func:`evaluate_study` / :func:`score_geochat_7b` (error naming ``producer``)."""
    return json.loads(ctx.require(ctx.result_file(model, task), producer=producer).read_text())


def reusable_result(ctx: RunContext, model: str, task: str, model_dir: Path, digest: str,
                    max_new_tokens: int) -> dict[str, Any] | None:
    """The saved result of ``model`` on ``task`` when it still holds (module docstring), else None."""
    path = ctx.result_file(model, task)
    if not path.is_file() or path.stat().st_mtime < max(f.stat().st_mtime for f in model_dir.iterdir()):
        return None
    result = json.loads(path.read_text())
    prov = result.get("provenance", {})
    same = (prov.get("profile"), prov.get("seed"), prov.get("records"), prov.get("max_new_tokens")) == \
        (ctx.profile.name, ctx.seed, digest, max_new_tokens)
    return result if same and Path(prov.get("answers", "")).is_file() else None


def evaluate_study(ctx: RunContext, models: Sequence[str] = MODELS, tasks: Sequence[str] = TASK_NAMES, *,
                   batch_size: int = 16, max_new_tokens: int | None = None,
                   limit: int | None = None, reuse: bool = True,
                   study: Study | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """Evaluate the trained ``models`` of the run (``ctx.model_dir``) on the test split of ``tasks``.

    Writes the answers and the results (module docstring) and returns ``{model: {task: result}}``. The token budget of a task is
    :func:`~kdlib.evaluate.generate.answer_budget` of its *training* answers unless
    ``max_new_tokens`` is given; ``limit`` caps the records per task (first in split order).
    ``reuse`` keeps results that still hold (:func:`reusable_result`); ``study`` defaults to the
    data of ``ctx.split_seed`` (the study's one split, whatever the seed).
    """
    from kdlib.data.study import load_study
    from kdlib.evaluate.generate import answer_budget
    from kdlib.models.feature_cache import data_processor

    specs = [eval_task(t) for t in tasks]
    folders = {name: ctx.model_dir(name) for name in models}
    missing = [str(folder) for folder in folders.values() if not folder.is_dir()]
    if missing:
        raise FileNotFoundError(f"model folder(s) {', '.join(missing)} do not exist: run the notebook "
                                f"'training' first (or kdlib train --profile {ctx.profile.name} --out {ctx.out_dir})")
    study = study or load_study(ctx.profile, ctx.data_root, ctx.split_seed)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name, folder in folders.items():
        mllm = load_for_inference(folder, ctx.device, ctx.profile.dtype)
        mllm = replace(mllm, image_processor=data_processor(mllm.model, mllm.image_processor, ctx.vision_cache))
        results[name] = {}
        for spec in specs:
            records = spec.select(study.test)[:limit]
            train = [r.answer for r in spec.select(study.train)]
            budget = max_new_tokens if max_new_tokens is not None else answer_budget(train, mllm.tokenizer)
            digest = records_digest(records)
            kept = reusable_result(ctx, name, spec.name, folder, digest, budget) if reuse else None
            if kept is not None:
                results[name][spec.name] = kept
                continue
            run = evaluate_model(mllm, records, spec.name, answers_path(ctx, name, spec.name),
                                 image_dir=ctx.crops_dir, max_new_tokens=budget, batch_size=batch_size,
                                 progress=ctx.progress)
            result = score_answers(spec.name, run.path, ctx.crops_dir)
            results[name][spec.name] = write_result(ctx, name, spec.name, result, n=run.n,
                                                    max_new_tokens=run.max_new_tokens, seconds=round(run.seconds, 2),
                                                    answers=str(run.path), split="test", seed=ctx.seed,
                                                    records=digest)
    return results


def score_geochat_7b(ctx: RunContext, tasks: Sequence[str] = tuple(GEOCHAT_7B_FILES)) -> dict[str, dict[str, Any]]:
    """Score the real GeoChat-7B answer files into ``ctx.result_file("geochat_7b_real", task)``.

    Referring boxes are scaled by the inferred per-dataset image sizes
    (:data:`kdlib.evaluate.grounding.DEFAULT_IMAGE_SIZES`): the images are not available.
    """
    results = {}
    for task in tqdm(tasks, desc=REAL_GEOCHAT, disable=not ctx.progress):
        path = answers_path(ctx, REAL_GEOCHAT, task)
        results[task] = write_result(ctx, REAL_GEOCHAT, task, score_answers(task, path), answers=str(path),
                                     source="whu-pzhang/piechat GeoChat-7B answers on GeoChat-Bench "
                                            "(docs/data.md)")
    return results
