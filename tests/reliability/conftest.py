"""Fixtures of the reliability tests: a very small ``tiny`` profile, its study, and a CLI runner.

Each test plants one fault (a corrupt file in ``tmp_path``, a writer raising ``ENOSPC``, a learning
rate that makes the loss NaN, a kill at a chosen point) and checks that it ends in one line naming
the file / key / step, a non-zero exit status, and nothing a later command would take as finished.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from kdlib.cli import main
from kdlib.data.study import load_study
from kdlib.profiles import get_profile

#: tiny at its smallest: 16 image tokens, batch 4, 4 steps, no warmup
FAST = {"vision.image_size": 32, "data.max_length": 128, "train.batch_size": 4, "train.sft_steps": 4,
        "train.kd_steps": 2, "train.max_new_tokens": 4, "train.warmup_ratio": 0.0}


@pytest.fixture(scope="session")
def fast_overrides() -> dict:
    return dict(FAST)


@pytest.fixture(scope="session")
def fast_profile():
    return get_profile("tiny", FAST)


@pytest.fixture(scope="session")
def fast_study(fast_profile, data_root):
    return load_study(fast_profile, data_root, seed=0)


@dataclass(frozen=True)
class Outcome:
    code: int
    stderr: str

    @property
    def line(self) -> str:
        """The single line on stderr (warnings aside); fails when there is more than one."""
        lines = [x for x in self.stderr.strip().splitlines() if x.strip() and "warn" not in x.lower()]
        assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{self.stderr}"
        return lines[0]


@pytest.fixture
def kdlib_cli(capsys):
    """Run ``kdlib ARGS`` in this process; return the exit status and what went to stderr."""
    def run(*args: str) -> Outcome:
        code = main(list(args))
        return Outcome(code, capsys.readouterr().err)
    return run

