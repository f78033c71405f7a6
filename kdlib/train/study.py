"""The trainings of the study at a profile: one run, the three of the training chapter, a list of variants.

Where each run's files go is :class:`kdlib.run.RunContext`'s layout (``model_dir``, ``train_dir``,
``vision_cache``). :func:`train_run` does one run (what ``kdlib train`` calls);
:func:`run_study_training` the three of the book's training chapter (teacher SFT, student SFT,
``paper`` distillation); :func:`train_variants` distils the SFT student once per
:class:`Variant` (the related-methods and ablations chapters). Distillation loads the two SFT
models of the run, so the runs can also be done one by one.

The study has one teacher (:data:`kdlib.run.TEACHER`): the context of any seed trains and finds it in
the book's folder, trained with the book's seed, and every seed's students start from it.

A run whose saved model, ``config.json`` and ``data.json`` match what would be trained now (same
configuration, profile, training records and start models, every step logged) is reused, not retrained:
rebuilding the ``small`` book does not repeat an hour of training. ``reuse=False`` (``kdlib train
--no-reuse``) trains anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import json
import os
import shutil

from accelerate import PartialState

from kdlib.data.alignment import alignment_records
from kdlib.data.pretrain import pretrain_texts
from kdlib.data.records import decode_record_images, records_digest
from kdlib.errors import UserError
from kdlib.files import remove_stale, writing
from kdlib.data.study import Study, corpus_texts, load_study
from kdlib.files import write_json
from kdlib.models import ModelPair, build_pair, build_tokenizer, load_mllm, save_mllm
from kdlib.models.feature_cache import data_processor
from kdlib.profiles import Profile
from kdlib.run import TEACHER, RunContext
from kdlib.train import checkpoint
from kdlib.train.config import (SFT_METHODS, TEACHER_METHODS, TrainConfig, changed_fields, kd_start, run_name,
                               sft_start)
from kdlib.train.distill import distill
from kdlib.train.metrics_log import read_metrics
from kdlib.train.sft import train_sft


@dataclass(frozen=True)
class RunPaths:
    """Where a run keeps its model and its metrics."""

    model: Path
    metrics: Path


@dataclass(frozen=True)
class StudyRuns:
    """The runs of :func:`run_study_training`, by name (``teacher``, ``student_sft``, ``student_kd``)."""

    runs: dict[str, RunPaths] = field(default_factory=dict)


def build_models(profile: Profile, study: Study, seed: int = 0) -> ModelPair:
    """Teacher and student before SFT; random profiles get a tokenizer fitted on the training texts."""
    random_llms = profile.teacher.name_or_path is None and profile.student.name_or_path is None
    tokenizer = build_tokenizer(corpus_texts(study), profile.vocab_size) if random_llms else None
    return build_pair(profile, tokenizer, seed)


_PRODUCERS = {"student_sft": "--method sft --role student", "student_guided": "--method guided_sft"}


def _require_model(ctx: RunContext, name: str, producer: str) -> Path:
    path = ctx.model_dir(name)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is missing: train it first with `kdlib train {producer}` "
                                f"(same --profile and --out)")
    return path


def _save(path: Path, model: Any, tokenizer: Any, image_processor: Any, run_dir: Path) -> None:
    """Save the trained model, then drop the run's checkpoints: they only serve to finish it.

    A disk fault raises one line saying where the trained weights are kept (the last step's
    checkpoint, when the run writes checkpoints) and how to finish.
    """
    state = PartialState()
    if state.is_main_process:
        try:
            with writing(path):
                save_mllm(path, model, tokenizer, image_processor)
        except UserError as err:
            kept = checkpoint.latest(run_dir / "checkpoints")
            after = (f"the trained weights are kept in {kept}: free space and add --resume to save them"
                     if kept is not None else "the trained weights are lost (train.checkpoint_every is 0): "
                     "free space and train again")
            raise UserError(f"{err}; {after}") from err
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    state.wait_for_everyone()


def _newest(folder: Path) -> float:
    return max((f.stat().st_mtime for f in folder.iterdir()), default=0.0)


def data_file(run_dir: Path) -> Path:
    """``run_dir/data.json``: which training records (:func:`~kdlib.data.records.records_digest`) a run saw."""
    return run_dir / "data.json"


def _main_process() -> bool:
    """Rank 0 of a launched run (``RANK`` from torchrun / accelerate), or a single process.

    Read from the environment: creating accelerate's ``PartialState`` before the run's
    ``Accelerator`` would fix its process group without the CPU flag and lose data parallelism.
    """
    return os.environ.get("RANK", "0") == "0"


def start_names(run_dir: Path, starts: Iterable[Path]) -> list[str]:
    """The models a run starts from as paths relative to ``run_dir`` (the same on every machine)."""
    return [os.path.relpath(start, run_dir) for start in starts]


def write_data_file(run_dir: Path, study: Study, finished: bool, starts: Iterable[Path] = ()) -> None:
    """Record the run's training records and start models (main process, atomic): when it starts
    (``finished`` false, what ``--resume`` checks) and once its model is saved (``finished`` true)."""
    if _main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        with writing(data_file(run_dir)):
            write_json(data_file(run_dir), {"train_records": records_digest(study.train), "n": len(study.train),
                                            "starts": start_names(run_dir, starts), "finished": finished},
                       indent=None)


def check_start(run_dir: Path, study: Study, resume: bool, restart: bool) -> None:
    """Before a run trains: ``resume`` needs the checkpoints' training records to be ``study.train``
    (``data.json``); without ``resume``, existing checkpoints are deleted only with ``restart``."""
    newest = checkpoint.latest(run_dir / "checkpoints")
    if newest is None:
        return
    if not resume:
        if not restart:
            raise UserError(f"{run_dir / 'checkpoints'} holds a run stopped at {newest.name}: continue it with "
                            "--resume, or start over with --restart (deletes its checkpoints)")
        return
    data = data_file(run_dir)
    saved = json.loads(data.read_text()) if data.is_file() else {}
    if saved and saved.get("train_records") != records_digest(study.train):
        raise UserError(f"{data}: --resume: the checkpoints were trained on other records ({saved.get('n')} "
                        f"training records) than this data gives ({len(study.train)}); use the same --data-root "
                        "and profile data sizes, or start over with --restart")


def finished_run(run_dir: Path, model_dir: Path, cfg: TrainConfig, profile: Profile, study: Study,
                 starts: Iterable[Path] = ()) -> RunPaths | None:
    """The run's paths when ``model_dir`` is saved after its ``starts`` (the models it began
    from, the same folders ``data.json`` records) and ``run_dir`` holds this configuration and
    profile (no :func:`~kdlib.train.config.changed_fields`) and ``study.train`` records with all
    ``cfg.steps`` steps logged; else None. A ``data.json`` written before the starts were recorded
    began from the models of its own folder (``models/<name>``, the layout of that time)."""
    config, metrics, data = run_dir / "config.json", run_dir / "metrics.jsonl", data_file(run_dir)
    if not (model_dir.is_dir() and config.is_file() and metrics.is_file() and data.is_file()):
        return None
    saved, starts = json.loads(data.read_text()), list(starts)
    if saved.get("train_records") != records_digest(study.train) or not saved.get("finished", True):
        return None
    began = saved.get("starts", start_names(run_dir, (model_dir.parent / start.name for start in starts)))
    if began != start_names(run_dir, starts) or any(_newest(start) > _newest(model_dir) for start in starts):
        return None
    same = not changed_fields(json.loads(config.read_text()), cfg, profile)
    return RunPaths(model_dir, metrics) if same and len(read_metrics(metrics)) == cfg.steps else None


def train_run(ctx: RunContext, method: str, role: str = "student", ablate: Iterable[str] = (),
              resume: bool = False, reuse: bool = True, study: Study | None = None, restart: bool = False,
              **changes: Any) -> RunPaths:
    """Train one model of the study and save it as ``ctx.model_dir(<run name>)``.

    ``sft`` and ``guided_sft`` start from :func:`build_models` (``role`` picks teacher or student;
    ``guided_sft`` is guided by the run's ``teacher``); the distillation methods start from the run's
    ``teacher`` and :func:`~kdlib.train.config.kd_start` models (checked before any data is read). The
    teacher is the study's one: ``role="teacher"`` trains (or reuses) it in the book's context
    (``ctx.root``), whatever seed ``ctx`` has. ``study`` defaults to the data of ``ctx.split_seed``; ``changes``
    override :class:`TrainConfig` fields. The configuration is built here, once, and passed down.
    Temporary folders of killed runs are removed; existing checkpoints are continued (``resume``)
    or replaced (``restart``), never silently deleted (:func:`check_start`); with
    ``profile.data.decode_images`` every training image is decoded before the first step.
    """
    if role == "teacher":
        ctx = ctx.root
    cfg = TrainConfig.from_profile(ctx.profile, method, ablate, role=role, seed=ctx.seed, progress=ctx.progress,
                                   **changes)
    run_dir, model_dir = ctx.train_dir(cfg.run_name), ctx.model_dir(cfg.run_name)
    if _main_process():
        for leftover in (f".{cfg.run_name}.tmp-*", f".{cfg.run_name}.old-*"):
            remove_stale(model_dir.parent, leftover)
    teacher = [] if method in TEACHER_METHODS else [_require_model(ctx, TEACHER, "--method sft --role teacher")]
    start = kd_start(ctx.profile) if method not in SFT_METHODS else sft_start(ctx.profile, method, role)
    producer = _PRODUCERS.get(start or "", f"--method projector --role {role}")
    starts = [*teacher, *([_require_model(ctx, start, producer)] if start else [])]
    study = study or load_study(ctx.profile, ctx.data_root, ctx.split_seed)
    records = _run_records(study, method)
    done = finished_run(run_dir, model_dir, cfg, ctx.profile, records, starts) if reuse else None
    if done is not None:
        if ctx.progress:
            print(f"{cfg.run_name}: reusing {model_dir} (same configuration and data, all {cfg.steps} steps done)")
        return done
    check_start(run_dir, records, resume, restart)
    if ctx.profile.data.decode_images:
        decode_record_images(records.train)
    write_data_file(run_dir, records, finished=False, starts=starts)
    if method in SFT_METHODS:
        if start:
            stage1 = load_mllm(starts[-1])
            model, tokenizer, processor = stage1.model, stage1.tokenizer, stage1.image_processor
        else:
            pair = build_models(ctx.profile, study, ctx.seed)
            model, tokenizer, processor = getattr(pair, role), pair.tokenizer, pair.image_processor
        guide = load_mllm(starts[0]).model if teacher else None
        result = train_sft(model, tokenizer, data_processor(model, processor, ctx.vision_cache), records, cfg,
                           ctx.profile, run_dir, resume=resume, device=ctx.device, teacher=guide)
    else:
        teacher, start = (load_mllm(path) for path in starts)
        tokenizer, processor = start.tokenizer, start.image_processor
        pt = pretrain_texts(ctx.profile, ctx.data_root, ctx.split_seed) if "lm" in cfg.terms else ()
        result = distill(start.model, teacher.model, tokenizer, data_processor(start.model, processor, ctx.vision_cache),
                         study, cfg, ctx.profile, run_dir, pt_texts=pt, resume=resume, device=ctx.device)
    _save(model_dir, result.model, tokenizer, processor, run_dir)
    write_data_file(run_dir, records, finished=True, starts=starts)
    return RunPaths(model_dir, result.metrics)


def _run_records(study: Study, method: str) -> Study:
    """The records a run trains and validates on: the study's, or their stage-1 descriptions
    (:func:`~kdlib.data.alignment.alignment_records`) for ``projector``."""
    if method != "projector":
        return study
    return replace(study, train=alignment_records(study.train), val=alignment_records(study.val))


def run_study_training(ctx: RunContext, method: str = "paper", ablate: Iterable[str] = (), resume: bool = True,
                       study: Study | None = None, **changes: Any) -> StudyRuns:
    """Teacher SFT, student SFT, the teacher-guided SFT when distillation starts from it
    (``train.kd_init = guided``) and distillation at ``ctx.profile``.

    Saves the models ``teacher``, ``student_sft`` and the distilled one (``student_kd`` for ``paper``) and
    a metrics JSONL per run; returns their paths by run name. The teacher is the book's
    (:func:`train_run`): for another seed it is reused, not trained again. ``study`` defaults to the
    data of ``ctx.split_seed``. A run a dead kernel interrupted continues from its newest checkpoint
    (``resume``, as the book's chapters do).
    """
    study = study or load_study(ctx.profile, ctx.data_root, ctx.split_seed)
    common = dict(resume=resume, study=study, **changes)
    runs = {}
    for role in ("teacher", "student") if ctx.profile.train.projector_steps else ():
        runs[run_name("projector", role=role)] = train_run(ctx, "projector", role=role, **common)
    runs[TEACHER] = train_run(ctx, "sft", role="teacher", **common)
    runs["student_sft"] = train_run(ctx, "sft", role="student", **common)
    if kd_start(ctx.profile) == run_name("guided_sft"):
        runs[run_name("guided_sft")] = train_run(ctx, "guided_sft", **common)
    runs[run_name(method, ablate)] = train_run(ctx, method, ablate=ablate, **common)
    return StudyRuns(runs)


@dataclass(frozen=True)
class Variant:
    """One distillation of the SFT student: a method, the terms of ``paper`` it leaves out, and for
    ``paper`` the MiniLLM estimator (``form``: code, paper or unbiased) and PPO epochs per rollout batch."""

    method: str
    ablate: tuple[str, ...] = ()
    form: str = "code"
    ppo_epochs: int = 1

    @property
    def name(self) -> str:
        """Its run and model name (:func:`kdlib.train.config.run_name`)."""
        return run_name(self.method, self.ablate, form=self.form, ppo_epochs=self.ppo_epochs)

    @property
    def changes(self) -> dict[str, Any]:
        """The :class:`TrainConfig` changes beyond method and ablation (none for the defaults)."""
        return {k: v for k, v, default in (("form", self.form, "code"), ("ppo_epochs", self.ppo_epochs, 1))
                if v != default}


def train_variants(ctx: RunContext, variants: Sequence[Variant], study: Study | None = None) -> dict[str, Path]:
    """Distil the run's ``teacher`` into its :func:`~kdlib.train.config.kd_start` student once per variant, same budget as ``student_kd``;
    ``{run name: model folder}``. A missing SFT model names the training notebook; a finished run is
    reused, an interrupted one continues from its newest checkpoint."""
    for model in (TEACHER, kd_start(ctx.profile)):
        ctx.require(ctx.model_dir(model), producer="training")
    study = study or load_study(ctx.profile, ctx.data_root, ctx.split_seed)
    return {v.name: train_run(ctx, v.method, ablate=v.ablate, resume=True, study=study, **v.changes).model
            for v in variants}
