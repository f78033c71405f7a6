"""File writes: a reader never sees half a file, a crash or a full disk never leaves a half-written one.

Every writer of kdlib goes through :func:`atomic_path`: the content is written to a temporary
file beside the target (``.<name>.<random>.tmp``, same folder, so the final rename stays on one
file system) and renamed over the target only when the write finished; on any error the
temporary file is removed and the target is left as it was. Writes that cannot be atomic (a model
folder, a checkpoint) run inside :func:`writing`, which removes their partial paths on any error;
:func:`require_writable` checks an output folder before any work and :func:`remove_stale` clears
the temporary folders of killed runs. Every disk fault becomes one line naming the path
(:func:`kdlib.errors.disk_fault`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kdlib.errors import UserError, disk_fault


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2, sort_keys: bool = True) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically."""
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys))


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any], sort_keys: bool = False) -> Path:
    """Write one JSON object per line to ``path`` atomically."""
    return write_text(path, "".join(json.dumps(row, sort_keys=sort_keys) + "\n" for row in rows))


def require_writable(folder: Path) -> None:
    """Create ``folder`` and write a probe file in it, or raise a one-line :class:`UserError`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe-"):
            pass
    except OSError as err:
        fault = disk_fault(err, folder)
        raise UserError(f"output folder {folder} is not writable ({fault or err})") from None


def remove(paths: Iterable[Path]) -> None:
    """Delete files and folders, those that are already gone included."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@contextmanager
def writing(target: Path, partial: Iterable[Path] = ()) -> Iterator[None]:
    """Run a write of ``target``; on a disk fault remove the ``partial`` paths and raise
    ``UserError("no space left on device while writing TARGET")``. Other errors pass unchanged
    (the partial paths still removed)."""
    try:
        yield
    except Exception as err:
        fault = disk_fault(err, target)  # before the removal frees the space it measures
        remove(partial)
        if fault is None:
            raise
        raise fault from err


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0; one owned by another user exists too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def remove_stale(folder: Path, pattern: str) -> list[Path]:
    """Remove the entries of ``folder`` matching ``pattern`` (``*`` = a process id at the end, e.g.
    ``.teacher.tmp-*``) whose process is gone, or is this one (its writes are over when a run
    starts); return them. Non-numeric tails are removed too."""
    if not folder.is_dir():
        return []
    stale = []
    for path in folder.glob(pattern):
        tail = path.name.rsplit("-", 1)[-1]
        if not (tail.isdigit() and int(tail) != os.getpid() and _pid_alive(int(tail))):
            stale.append(path)
    remove(stale)
    return stale
