"""The error type of user mistakes, shared by every sub-command, and disk faults told as one line."""

from __future__ import annotations

import errno
import os
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


TORCH_WRITE_FAILURES = ("iostream error", "StreamWriter", "file write failed", "unexpected pos")
"""What torch's C++ writer says, without an errno, when a write fails (a full disk, most often)."""


def disk_fault(err: BaseException, path: Path | str | None) -> UserError | None:
    """``UserError("no space left on device while writing PATH")`` (or the errno's words) for a failed
    write, or None when ``err`` is not a disk fault.

    The fault is read from the errno (``OSError``), from the system's words in the message (the
    safetensors writer: ``... No space left on device (os error 28)``), or, for torch's writer, which
    says neither (:data:`TORCH_WRITE_FAILURES`), from the free space left where ``path`` lives (less
    than :data:`LOW_SPACE_BYTES`: a full disk). Call it before removing the partial file.
    """
    where = Path(path if path is not None else getattr(err, "filename", None) or ".")
    code = getattr(err, "errno", None)
    if code in DISK_FAULTS:
        return UserError(f"{DISK_FAULTS[code]} while writing {where}")
    text = str(err)
    for code, words in DISK_FAULTS.items():
        if os.strerror(code) in text:
            return UserError(f"{words} while writing {where}")
    if isinstance(err, RuntimeError) and any(marker in text for marker in TORCH_WRITE_FAILURES):
        free = _free_bytes(where)
        words = DISK_FAULTS[errno.ENOSPC] if free is not None and free < LOW_SPACE_BYTES else "write failed"
        return UserError(f"{words} while writing {where} ({text.splitlines()[0]})")
    return None
