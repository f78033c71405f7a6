"""The error type of user mistakes, shared by every sub-command, and disk faults told as one line."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

DISK_FAULTS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
               errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
               errno.EPERM: "operation not permitted"}
"""errno -> the words of a one-line disk-fault message."""

LOW_SPACE_BYTES = 1 << 20
"""Free space under which a write failure without errno (torch's C++ writer) is read as a full disk."""


class UserError(Exception):
    """An error caused by the user's input: ``kdlib`` prints it as one message, no traceback, exit 2."""


def _free_bytes(path: Path) -> int | None:
    for folder in (path, *path.parents):
        if folder.exists():
            return shutil.disk_usage(folder).free
    return None


def disk_fault(err: BaseException, path: Path | str | None) -> UserError | None:
    """``UserError("no space left on device while writing PATH")`` (or the errno's words) for a failed
    write, or None when ``err`` is not a disk fault.

    torch's writer raises ``RuntimeError`` without an errno (``basic_ios::clear: iostream error``,
    ``PytorchStreamWriter failed writing file``); it counts as a full disk when less than
    :data:`LOW_SPACE_BYTES` are free where ``path`` lives.
    """
    where = Path(path if path is not None else getattr(err, "filename", None) or ".")
    code = getattr(err, "errno", None)
    if code in DISK_FAULTS:
        return UserError(f"{DISK_FAULTS[code]} while writing {where}")
    text = str(err)
    if isinstance(err, RuntimeError) and ("iostream" in text or "StreamWriter" in text or "file write failed" in text):
        free = _free_bytes(where)
        words = DISK_FAULTS[errno.ENOSPC] if free is not None and free < LOW_SPACE_BYTES else "write failed"
        return UserError(f"{words} while writing {where} ({text.splitlines()[0]})")
    return None
