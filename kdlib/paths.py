"""Where kdlib finds the real data and the pretrained models.

Data root: ``--data-root`` > ``$KDLIB_DATA`` > ``../shared/data`` next to the repository.
Model root: ``--model-root`` > ``$KDLIB_MODEL_ROOT``; a hub id ``org/name`` maps to
``<root>/org/name`` when that folder exists, else it is passed to ``from_pretrained`` as is
(a normal hub download for users with internet).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

DATA_SOURCES = """\
kdlib needs the study's real remote-sensing data. Get it from the official sources:
  UCMerced Land Use   http://weegee.vision.ucmerced.edu/datasets/landuse.html
  AID                 https://captain-whu.github.io/AID/
  RSVQA-LR / HR       https://zenodo.org/records/6344334 and https://zenodo.org/records/6344367
  UCM-captions        https://github.com/201528014227051/RSICD_optimal
  RSIVQA              https://github.com/spectralpublic/RSIVQA
  DOTA devkit         https://github.com/CAPTAIN-WHU/DOTA_devkit
  GeoChat-Bench       https://huggingface.co/datasets/MBZUAI/GeoChat-Bench
laid out as described in docs/data.md (ucmerced/<class>/*.jpg, aid/<Class>/*.jpg, rsvqa_lr/,
rsvqa_hr/, captions/ucm_captions/, rsivqa_ucm/, grounding/, geochat_bench/).
Then point kdlib at the folder with --data-root PATH or the environment variable KDLIB_DATA=PATH."""


class DataNotFoundError(FileNotFoundError):
    """Raised when no data root can be found; its message says where the data comes from."""


def default_data_root() -> Path | None:
    """``$KDLIB_DATA`` if set, else ``../shared/data`` beside the repository if it exists."""
    env = os.environ.get("KDLIB_DATA")
    if env:
        return Path(env).expanduser()
    shared = REPO_ROOT.parent / "shared" / "data"
    return shared if shared.is_dir() else None


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """The data root to use, or :class:`DataNotFoundError` naming the sources and how to point at them."""
    root = Path(data_root).expanduser() if data_root else default_data_root()
    if root is None:
        raise DataNotFoundError(f"no data root given and ../shared/data does not exist.\n{DATA_SOURCES}")
    if not root.is_dir():
        raise DataNotFoundError(f"data root {root} is not a folder.\n{DATA_SOURCES}")
    return root.resolve()


def model_root(root: str | os.PathLike | None = None) -> Path | None:
    env = root or os.environ.get("KDLIB_MODEL_ROOT")
    return Path(env).expanduser() if env else None


def resolve_model(name_or_path: str, root: str | os.PathLike | None = None) -> str:
    """Map a hub id to a local folder under the model root when one exists; else return it unchanged."""
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    base = model_root(root)
    if base is not None and (base / name_or_path).is_dir():
        return str(base / name_or_path)
    return name_or_path
