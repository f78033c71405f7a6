"""The arguments every sub-command that runs a profile shares, parsed in one place."""

from __future__ import annotations

import argparse

from kdlib.profiles import PROFILE_NAMES, Profile, get_profile, parse_overrides
from kdlib.run import RunContext, make_context


def add_profile_args(parser: argparse.ArgumentParser, default: str = "tiny") -> None:
    """``--profile`` and ``--set KEY=VALUE`` overrides."""
    parser.add_argument("--profile", choices=PROFILE_NAMES, default=default, help="profile to run (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                        help="override a profile field, e.g. --set train.kd_steps=10 (repeatable)")


def add_run_args(parser: argparse.ArgumentParser, progress: bool = True) -> None:
    """``--out``, ``--data-root``, ``--seed``, ``--device`` (and ``--no-progress``): where and how a profile runs."""
    parser.add_argument("--out", default="", help="output folder of the profile (default: runs/<profile> in the repository)")
    parser.add_argument("--data-root", default="", help="folder of the real data (default: $KDLIB_DATA or ../shared/data)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    if progress:
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def overrides_from_args(args: argparse.Namespace) -> dict[str, str]:
    """The ``--set`` overrides as ``{key: value}`` (a one-line error for an item that is not KEY=VALUE)."""
    return parse_overrides(args.overrides)


def profile_from_args(args: argparse.Namespace) -> Profile:
    """The profile with its ``--set`` overrides applied (validated)."""
    return get_profile(args.profile, overrides_from_args(args))


def context_from_args(args: argparse.Namespace) -> RunContext:
    """The :class:`~kdlib.run.RunContext` of ``--profile/--set/--out/--data-root/--seed/--device``."""
    return make_context(profile_from_args(args), args.data_root or None, args.out or None, args.seed, args.device,
                        not args.no_progress)
