"""A run of the study: its context (profile, data, seed, device) and the one layout of its output folder.

Every file a run writes lies under its output folder (``RunContext.out_dir``)::

    models/<name>/                 a trained model (teacher, student_sft, student_kd, student_<method>, ...)
    train/<name>/                  config.json, data.json, metrics.jsonl, checkpoints/ of that training run
    answers/<model>/<task>.jsonl   a model's generated answers on a task (GeoChat-Bench JSONL)
    answers/images/                the DOTA crops the referring answers are scored against
    results/<model>/<task>.json    the scores of those answers, with their provenance
    results/<chapter>.json         what a chapter measured (seeds.json, ablations.json, ...)
    curves/<run>/                  a run's learning curve: its snapshots' answers and curve.json
    figures/<name>.png             the figures of the chapters
    cache/vision/                  cached features of the frozen vision tower (``small``)
    seeds/seed<s>/                 the same layout again for each extra seed of the seeds chapter (no teacher,
                                   no stage-1 model)

A study has one teacher, as the paper has one GeoChat-13B: the context of an extra seed
(:meth:`RunContext.for_seed`) finds ``models/teacher`` and ``train/teacher`` (and the stage-1 models,
:data:`SHARED_RUNS`) in the book's folder, not under ``seeds/seed<s>/``, and shares the book's vision cache. Every seed also reads the same data
split (``RunContext.split_seed``), so no seed's students are tested on images the teacher trained on,
and the seeds are compared on the same test records.

Only this module spells those names; the rest of kdlib asks a :class:`RunContext` for a path.
The default output folder is ``runs/<profile>`` in the repository (:func:`default_out_dir`), for
``kdlib train``, ``kdlib evaluate``, ``kdlib reproduce`` and a notebook run by hand alike.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from kdlib.devices import pick_device
from kdlib.files import require_writable
from kdlib.paths import REPO_ROOT, resolve_data_root
from kdlib.profiles import Profile


def default_out_dir(profile_name: str) -> Path:
    """``<repository>/runs/<profile>``: where a run writes when no output folder is given."""
    return REPO_ROOT / "runs" / profile_name


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


TEACHER = "teacher"
"""The name of the study's one teacher (its model and training folders)."""
SHARED_RUNS = (TEACHER, "teacher_projector", "student_projector")
"""Runs made once for the whole study and kept in the book's folder: the teacher and the two models of
LLaVA's stage 1 (the student's stands for the one pretrained student the paper starts from)."""


@dataclass(frozen=True)
class RunContext:
    """What a run is (profile, data, seed, device) and where each of its files goes."""

    profile: Profile
    data_root: Path
    out_dir: Path
    seed: int
    device: torch.device
    progress: bool
    split_seed: int = 0  # the data split and subsets (:func:`kdlib.data.study.load_study`), one for the whole study
    book: RunContext | None = None  # the book's context this extra seed's context was made from; None: this is it

    @property
    def root(self) -> RunContext:
        """The book's context: what every seed shares (the teacher, the vision cache) lives in its folder."""
        return self.book or self

    # -- the layout -------------------------------------------------------------------------
    def _home(self, name: str) -> Path:
        """The output folder that holds run ``name``: the book's for :data:`SHARED_RUNS`, this one's otherwise."""
        return (self.root if name in SHARED_RUNS else self).out_dir

    def model_dir(self, name: str) -> Path:
        """``models/<name>``: a trained model (:func:`kdlib.models.io.save_mllm` folder); the teacher's is
        in the book's folder."""
        return self._home(name) / "models" / name

    def train_dir(self, name: str) -> Path:
        """``train/<name>``: configuration, metrics and checkpoints of the training run ``name``; the
        teacher's is in the book's folder."""
        return self._home(name) / "train" / name

    def answers_file(self, model: str, task: str) -> Path:
        """``answers/<model>/<task>.jsonl``: the answers of ``model`` on evaluation ``task`` (a shared
        model's in the book's folder: every seed tests it on the same records)."""
        return self._home(model) / "answers" / model / f"{task}.jsonl"

    @property
    def crops_dir(self) -> Path:
        """``answers/images``: the DOTA crops of the answer files."""
        return self.out_dir / "answers" / "images"

    def results_dir(self, model: str) -> Path:
        """``results/<model>``: the scores of one model, one file per task (a shared model's in the book's folder)."""
        return self._home(model) / "results" / model

    def result_file(self, model: str, task: str) -> Path:
        """``results/<model>/<task>.json``: the scores of ``model`` on ``task``."""
        return self.results_dir(model) / f"{task}.json"

    def curve_dir(self, run: str) -> Path:
        """``curves/<run>``: the answers of the snapshots of ``run`` (``step-NNNNNNNN/<task>.jsonl``) and its
        learning curve (:meth:`curve_file`); a shared run's in the book's folder."""
        return self._home(run) / "curves" / run

    def curve_file(self, run: str) -> Path:
        """``curves/<run>/curve.json``: the learning curve of ``run`` (:mod:`kdlib.analysis.learning_curve`)."""
        return self.curve_dir(run) / "curve.json"

    def chapter_file(self, name: str) -> Path:
        """``results/<name>``: what a chapter measured (``seeds.json``, ``ablations.json``, ...)."""
        return self.out_dir / "results" / name

    def figure_file(self, name: str) -> Path:
        """``figures/<name>`` (its folder created)."""
        path = self.out_dir / "figures" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def vision_cache(self) -> Path:
        """``cache/vision`` of the book's folder: the frozen vision tower's cached features
        (:mod:`kdlib.models.feature_cache`), the same for every seed."""
        return self.root.out_dir / "cache" / "vision"

    def for_seed(self, seed: int) -> RunContext:
        """The context of ``seed``: the book's for the book's seed, else ``seeds/seed<s>`` of the book's folder
        with the same layout, the same data split, and the book's teacher and vision cache (module docstring)."""
        root = self.root
        if seed == root.seed:
            return root
        return replace(root, seed=seed, out_dir=root.out_dir / "seeds" / f"seed{seed}", book=root)

    # -- reading ----------------------------------------------------------------------------
    def require(self, path: Path, producer: str) -> Path:
        """``path`` when it exists, else an error naming the notebook ``producer`` that writes it."""
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run the notebook {producer!r} first "
                                    f"(or `kdlib reproduce --profile {self.profile.name}`)")
        return path

    def provenance(self) -> dict[str, str]:
        return {
            "profile": self.profile.name,
            "device": device_name(self.device),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "torch": torch.__version__,
        }


def make_context(profile: Profile, data_root: str | os.PathLike | None = None,
                 out_dir: str | os.PathLike | None = None, seed: int = 0,
                 device: str | torch.device | None = "auto", progress: bool = True) -> RunContext:
    """The context of a run: data root resolved (error naming the sources when absent), output folder
    :func:`default_out_dir` unless given (created, and checked writable), device picked and checked."""
    out = Path(out_dir).expanduser().resolve() if out_dir else default_out_dir(profile.name)
    require_writable(out)
    return RunContext(profile, resolve_data_root(data_root or None), out, seed, pick_device(device), progress)
