"""A run of the study: its context (profile, data, seed, device) and the one layout of its output folder.

Every file a run writes lies under its output folder (``RunContext.out_dir``)::

    models/<name>/                 a trained model (teacher, student_sft, student_kd, student_<method>, ...)
    train/<name>/                  config.json, data.json, metrics.jsonl, checkpoints/ of that training run
    answers/<model>/<task>.jsonl   a model's generated answers on a task (GeoChat-Bench JSONL)
    answers/images/                the DOTA crops the referring answers are scored against
    results/<model>/<task>.json    the scores of those answers, with their provenance
    results/<chapter>.json         what a chapter measured (seeds.json, ablations.json, ...)
    figures/<name>.png             the figures of the chapters
    cache/vision/                  cached features of the frozen vision tower (``small``)
    seeds/seed<s>/                 the same layout again for each extra seed of the seeds chapter

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


@dataclass(frozen=True)
class RunContext:
    """What a run is (profile, data, seed, device) and where each of its files goes."""

    profile: Profile
    data_root: Path
    out_dir: Path
    seed: int
    device: torch.device
    progress: bool
    cache_root: Path | None = None  # features that no seed or run changes; None: ``out_dir/cache``

    # -- the layout -------------------------------------------------------------------------
    def model_dir(self, name: str) -> Path:
        """``models/<name>``: a trained model (:func:`kdlib.models.io.save_mllm` folder)."""
        return self.out_dir / "models" / name

    def train_dir(self, name: str) -> Path:
        """``train/<name>``: configuration, metrics and checkpoints of the training run ``name``."""
        return self.out_dir / "train" / name

    def answers_file(self, model: str, task: str) -> Path:
        """``answers/<model>/<task>.jsonl``: the answers of ``model`` on evaluation ``task``."""
        return self.out_dir / "answers" / model / f"{task}.jsonl"

    @property
    def crops_dir(self) -> Path:
        """``answers/images``: the DOTA crops of the answer files."""
        return self.out_dir / "answers" / "images"

    def results_dir(self, model: str) -> Path:
        """``results/<model>``: the scores of one model, one file per task."""
        return self.out_dir / "results" / model

    def result_file(self, model: str, task: str) -> Path:
        """``results/<model>/<task>.json``: the scores of ``model`` on ``task``."""
        return self.results_dir(model) / f"{task}.json"

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
        """``cache/vision``: the frozen vision tower's cached features (:mod:`kdlib.models.feature_cache`)."""
        return (self.cache_root or self.out_dir / "cache") / "vision"

    def for_seed(self, seed: int) -> RunContext:
        """The context of another ``seed``: this one for ``self.seed``, else ``seeds/seed<s>`` with the same
        layout, sharing this run's vision feature cache (the frozen tower gives every seed the same features)."""
        if seed == self.seed:
            return self
        return replace(self, seed=seed, out_dir=self.out_dir / "seeds" / f"seed{seed}",
                       cache_root=self.vision_cache.parent)

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
