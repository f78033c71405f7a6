"""Generation-based evaluation of the study's models (issue 7) and ``kdlib evaluate``.

:func:`evaluate_model` answers one task's records with one model (greedy, GeoChat's prompts,
:mod:`kdlib.evaluate.generate`) and writes the answers as GeoChat-Bench JSONL
(:mod:`kdlib.evaluate.tasks`). :func:`evaluate_study` does it for the trained models of a
profile and scores every file with :func:`~kdlib.evaluate.score.score_file`::

    <out_dir>/answers/<model>/<task>.jsonl    the answers (``kdlib score`` reads them)
    <out_dir>/answers/images/<image_id>.png   the DOTA crops (``kdlib score referring --image-dir``)
    <out_dir>/results/<model>/<task>.json     score_file's metrics + "provenance"

Models are ``<out_dir>/models/<model>`` folders (``teacher``, ``student_sft``, ``student_kd``,
``student_<method>``; :func:`kdlib.models.io.save_mllm`). :func:`score_geochat_7b` scores the real
GeoChat-7B answer files of ``<data_root>/geochat_bench`` into ``results/geochat_7b_real/``.

A result is reused, not regenerated, when it was written after the model was saved, for the same
profile, seed, test records (sha256 of their ids) and token budget, and its answer file is still
there: rebuilding the ``small`` book re-reads an evaluation instead of repeating it
(``kdlib evaluate --no-reuse`` regenerates).

    kdlib evaluate --profile tiny [--models teacher student_kd] [--tasks scene_aid vqa_lr]
                   [--out DIR] [--data-root DIR] [--batch-size 16] [--max-new-tokens N] [--geochat-7b]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from kdlib.data.records import Record, records_digest
from kdlib.evaluate.tasks import TASK_NAMES, answer_line, eval_task, write_crops

if TYPE_CHECKING:
    from kdlib.book import RunContext

MODELS = ("student_sft", "teacher", "student_kd")
"""The three models of the study, in the book's order (baseline, teacher, distilled)."""
REAL_GEOCHAT = "geochat_7b_real"
GEOCHAT_7B_FILES = {
    "scene_ucmerced": "UCmerced_geochat_7b.jsonl",
    "scene_aid": "AID_geochat_7b.jsonl",
    "referring": "referring_geochat_7b.jsonl",
    "region_caption": "region_caption_geochat_7b.jsonl",
}
"""The real GeoChat-7B answer files of ``<data_root>/geochat_bench`` (MANIFEST section 8)."""


@dataclass(frozen=True)
class AnswerRun:
    """One written answer file: where, how many answers, the token budget and the time it took."""

    path: Path
    n: int
    max_new_tokens: int
    seconds: float


def load_model_dir(path: str | Path, device: Any = None, dtype: Any = None) -> Any:
    """:func:`kdlib.models.io.load_mllm` with errors that name the folder."""
    from kdlib.models.io import load_mllm

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model folder {path} does not exist: train the model first "
                                f"(kdlib train, or the book's training notebook)")
    try:
        return load_mllm(path, dtype=dtype, device=device)
    except (OSError, ValueError) as err:
        raise ValueError(f"model folder {path} cannot be loaded: {err}") from err


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """One JSON object per line, written atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def evaluate_model(model: Any, records: Sequence[Record], task: str, answers_path: str | Path, *,
                   image_dir: str | Path | None = None, max_new_tokens: int | None = None, batch_size: int = 16,
                   device: Any = None, dtype: Any = None, progress: bool = True) -> AnswerRun:
    """Answer ``records`` of evaluation ``task`` with ``model`` and write the answer file.

    ``model``: a :class:`~kdlib.models.io.LoadedMLLM` or a model folder. ``max_new_tokens``
    None: :func:`~kdlib.evaluate.generate.answer_budget` of these records' references. The DOTA
    tasks also write their crops to ``image_dir`` (default: ``images/`` beside the answers).
    """
    from kdlib.evaluate.generate import answer_budget, generate_answers
    from kdlib.models.io import LoadedMLLM

    spec = eval_task(task)
    if not records:
        raise ValueError(f"no records to evaluate for task {task}")
    spec.check(records)
    mllm = model if isinstance(model, LoadedMLLM) else load_model_dir(model, device, dtype)
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
    """The answer file of ``model`` on ``task``: ``<out_dir>/answers/...``, or the real GeoChat-7B file."""
    if model == REAL_GEOCHAT:
        if task not in GEOCHAT_7B_FILES:
            raise ValueError(f"no real GeoChat-7B answers for {task}; they exist for {', '.join(GEOCHAT_7B_FILES)}")
        return Path(ctx.data_root) / "geochat_bench" / GEOCHAT_7B_FILES[task]
    return Path(ctx.out_dir) / "answers" / model / f"{task}.jsonl"


def crops_dir(ctx: RunContext) -> Path:
    """Where the DOTA crops of the answer files are: ``<out_dir>/answers/images``."""
    return Path(ctx.out_dir) / "answers" / "images"


def write_result(ctx: RunContext, model: str, task: str, result: dict[str, Any], **provenance: Any) -> dict[str, Any]:
    """Write ``<out_dir>/results/<model>/<task>.json``: ``result`` plus ``"provenance"`` (the run
    context's, the model, the task and ``provenance``); return it as read back (plain JSON types)."""
    from kdlib.book import write_json

    path = ctx.path("results", model, f"{task}.json")
    record = {**result, "provenance": {**ctx.provenance(), "model": model, "task": task, **provenance}}
    write_json(path, record)
    return json.loads(path.read_text())


def read_result(ctx: RunContext, model: str, task: str, producer: str = "scene_classification") -> dict[str, Any]:
    """A result written by :func:`evaluate_study` / :func:`score_geochat_7b` (error naming ``producer``)."""
    return json.loads(ctx.require("results", model, f"{task}.json", producer=producer).read_text())


def reusable_result(ctx: RunContext, model: str, task: str, model_dir: Path, digest: str,
                    max_new_tokens: int) -> dict[str, Any] | None:
    """The saved result of ``model`` on ``task`` when it still holds (module docstring), else None."""
    path = Path(ctx.out_dir) / "results" / model / f"{task}.json"
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
                   study: Any = None) -> dict[str, dict[str, dict[str, Any]]]:
    """Evaluate the trained ``models`` of ``ctx.out_dir/models`` on the test split of ``tasks``.

    ``ctx`` is a :class:`kdlib.book.RunContext`. Writes the answers and the results (module
    docstring) and returns ``{model: {task: result}}``. The token budget of a task is
    :func:`~kdlib.evaluate.generate.answer_budget` of its *training* answers unless
    ``max_new_tokens`` is given; ``limit`` caps the records per task (first in split order).
    ``reuse`` keeps results that still hold (:func:`reusable_result`); ``study`` defaults to the
    data of ``ctx.seed``.
    """
    from kdlib.data.study import load_study
    from kdlib.evaluate.generate import answer_budget
    from kdlib.models.feature_cache import data_processor

    specs = [eval_task(t) for t in tasks]
    folders = {name: Path(ctx.out_dir) / "models" / name for name in models}
    missing = [str(folder) for folder in folders.values() if not folder.is_dir()]
    if missing:
        raise FileNotFoundError(f"model folder(s) {', '.join(missing)} do not exist: run the notebook "
                                f"'training' first (or kdlib train --profile {ctx.profile.name} --out {ctx.out_dir})")
    dtype = "bfloat16" if ctx.profile.dtype == "bfloat16" and ctx.device.type == "cuda" else None
    study = study or load_study(ctx.profile, ctx.data_root, ctx.seed)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name, folder in folders.items():
        mllm = load_model_dir(folder, ctx.device, dtype)
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
                                 image_dir=crops_dir(ctx), max_new_tokens=budget, batch_size=batch_size,
                                 progress=ctx.progress)
            result = score_answers(spec.name, run.path, crops_dir(ctx))
            results[name][spec.name] = write_result(ctx, name, spec.name, result, n=run.n,
                                                    max_new_tokens=run.max_new_tokens, seconds=round(run.seconds, 2),
                                                    answers=str(run.path), split="test", seed=ctx.seed,
                                                    records=digest)
    return results


def score_geochat_7b(ctx: RunContext, tasks: Sequence[str] = tuple(GEOCHAT_7B_FILES)) -> dict[str, dict[str, Any]]:
    """Score the real GeoChat-7B answer files into ``results/geochat_7b_real/<task>.json``.

    Referring boxes are scaled by the inferred per-dataset image sizes
    (:data:`kdlib.evaluate.grounding.DEFAULT_IMAGE_SIZES`): the images are not available.
    """
    results = {}
    for task in tqdm(tasks, desc=REAL_GEOCHAT, disable=not ctx.progress):
        path = answers_path(ctx, REAL_GEOCHAT, task)
        results[task] = write_result(ctx, REAL_GEOCHAT, task, score_answers(task, path), answers=str(path),
                                     source="whu-pzhang/piechat GeoChat-7B answers on GeoChat-Bench "
                                            "(data MANIFEST section 8)")
    return results


def add_parser(sub) -> None:
    from kdlib.commands.profiles import add_profile_args, add_run_args

    p = sub.add_parser("evaluate", help="answer the test tasks with the trained models and score them",
                       description="Generate answers (greedy, GeoChat prompts) with the trained models of a "
                       "profile, write them as GeoChat-Bench JSONL and score them (results/<model>/<task>.json).")
    add_profile_args(p)
    p.add_argument("--models", nargs="+", default=list(MODELS), metavar="MODEL",
                   help=f"model folders under OUT/models (default: {' '.join(MODELS)})")
    p.add_argument("--tasks", nargs="+", default=list(TASK_NAMES), choices=TASK_NAMES, metavar="TASK",
                   help=f"evaluation tasks (default: all: {', '.join(TASK_NAMES)})")
    p.add_argument("--batch-size", type=int, default=16, help="prompts per generate call (default: %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                   help="answer length cap for every task (default: per task, from its training answers)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="at most N test records per task")
    p.add_argument("--no-reuse", action="store_true",
                   help="regenerate answers even when a saved result still holds (same model, records, budget)")
    p.add_argument("--geochat-7b", action="store_true",
                   help="also score the real GeoChat-7B answer files of DATA_ROOT/geochat_bench")
    add_run_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kdlib.book import setup
    from kdlib.evaluate.report import headline_table
    from kdlib.profiles import parse_overrides

    for name, value in (("--batch-size", args.batch_size), ("--max-new-tokens", args.max_new_tokens),
                        ("--limit", args.limit)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    ctx = setup(args.profile, args.data_root, args.out, args.seed, args.device, not args.no_progress,
                parse_overrides(args.overrides), glue=False)
    results = evaluate_study(ctx, args.models, args.tasks, batch_size=args.batch_size,
                             max_new_tokens=args.max_new_tokens, limit=args.limit, reuse=not args.no_reuse)
    if args.geochat_7b:
        results[REAL_GEOCHAT] = score_geochat_7b(ctx, [t for t in args.tasks if t in GEOCHAT_7B_FILES])
    print(headline_table(results).to_string())
    print(f"answers: {Path(ctx.out_dir) / 'answers'}\nresults: {Path(ctx.out_dir) / 'results'}")
    return 0
