"""The ``--device`` of a run (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``), checked before any work."""

from __future__ import annotations

import torch

from kdlib.errors import UserError

DEVICE_TYPES = ("cpu", "cuda", "mps")


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) -> ``cuda`` when available, else ``cpu``; any other must be a device this machine has.

    A malformed name, an unsupported type, or ``cuda`` without CUDA raises a one-line :class:`UserError`
    (never a silent fall-back to the CPU).
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in DEVICE_TYPES:
        raise UserError(f"--device {device!r} is not a device; choose auto, {', '.join(DEVICE_TYPES)} or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine (torch {torch.__version__}); "
                        "use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {device}: MPS is not available on this machine; use --device cpu or auto")
    return dev
