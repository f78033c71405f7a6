"""``kdlib profiles``: print the three profiles as a table (or JSON)."""

from __future__ import annotations

import argparse
import json

from kdlib.profiles import PROFILE_NAMES, get_profile, profiles_table


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
