"""The ``kdlib`` command line: one sub-command per module of :mod:`kdlib.commands`, each with its own ``--help``.

Every module named in ``COMMANDS`` (thin adapters: arguments in, a library call, output) provides ``add_parser(subparsers)``, which registers its
sub-command and sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and
returning an exit code), and may set ``on_interrupt`` (what to tell a user who pressed Ctrl-C).

:func:`main` is the one place where kdlib's own errors (:class:`~kdlib.errors.UserError`, a
:class:`~kdlib.data.records.DataError` or other ``ValueError``, a missing file, a disk fault)
and Ctrl-C become one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from kdlib import __version__
from kdlib.errors import UserError, disk_fault

COMMANDS = {
    "profiles": "kdlib.commands.profiles",
    "reproduce": "kdlib.commands.reproduce",
    "train": "kdlib.commands.train",
    "evaluate": "kdlib.commands.evaluate",
    "curve": "kdlib.commands.evaluate",
    "score": "kdlib.commands.score",
    "efficiency": "kdlib.commands.models",
    "convert-geochat": "kdlib.commands.models",
}
"""Sub-command -> the module that registers it (a module may register several)."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, just that sub-command's module is imported (fast start-up)."""
    parser = argparse.ArgumentParser(
        prog="kdlib",
        description="Knowledge distillation of remote-sensing multimodal LLMs "
        "(GeoChat-13B -> GeoChat-7B): train, evaluate, score and reproduce the book.",
    )
    parser.add_argument("--version", action="version", version=f"kdlib {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = [COMMANDS[only]] if only in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UserError, FileNotFoundError, ValueError) as err:
        return _fail(args.command, str(err))
    except BrokenPipeError:  # the reader stopped early (`kdlib profiles | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except OSError as err:
        fault = disk_fault(err, err.filename)
        if fault is None:
            raise
        return _fail(args.command, str(fault))
    except KeyboardInterrupt:
        hint = getattr(args, "on_interrupt", "")
        print(f"kdlib {args.command}: interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 130


def _fail(command: str, message: str) -> int:
    """Print ``kdlib COMMAND: error: MESSAGE`` on stderr; the exit status of a failed command (2)."""
    print(f"kdlib {command}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
