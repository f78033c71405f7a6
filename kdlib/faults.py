"""Guards a run puts around the file system: a writable output folder, writes that leave nothing
half-written behind, and temporary folders of killed runs removed.

Every fault becomes a :class:`~kdlib.errors.UserError` with one line naming the path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from kdlib.errors import UserError, disk_fault


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
