"""``kdlib profiles``: print the three profiles as a table (or JSON)."""

from __future__ import annotations

import argparse
import json

from kdlib.profiles import PROFILE_NAMES, get_profile, parse_overrides, profiles_table


def add_profile_args(parser: argparse.ArgumentParser, default: str = "tiny") -> None:
    """``--profile`` and ``--set KEY=VALUE`` overrides, shared by every sub-command that runs a profile."""
    parser.add_argument("--profile", choices=PROFILE_NAMES, default=default, help="profile to run (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                        help="override a profile field, e.g. --set train.kd_steps=10 (repeatable)")


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """``--out``, ``--data-root``, ``--seed``, ``--device``: where and how a profile runs (train, evaluate, reproduce)."""
    parser.add_argument("--out", default="", help="output folder of the profile (default: runs/<profile>)")
    parser.add_argument("--data-root", default="", help="folder of the real data (default: $KDLIB_DATA or ../shared/data)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")


def profile_from_args(args: argparse.Namespace):
    """The profile of ``--profile`` and ``--set``; with :func:`add_run_args`, ``--device`` is checked too."""
    profile = get_profile(args.profile, parse_overrides(args.overrides))
    if getattr(args, "device", "auto") != "auto":
        from kdlib.devices import pick_device  # imports torch: only for commands that run a profile

        pick_device(args.device)
    return profile


def add_parser(sub) -> None:
    p = sub.add_parser("profiles", help="print the tiny / small / paper profiles",
                       description="Print the three profiles of the study side by side.")
    p.add_argument("--json", action="store_true", help="print every field of every profile as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps({n: get_profile(n).to_dict() for n in PROFILE_NAMES}, indent=2))
    else:
        print(profiles_table())
    return 0
