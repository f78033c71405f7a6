"""UCM-captions reader (Karpathy-style JSON, ``docs/data.md`` §5).

``<root>/captions/ucm_captions/dataset_ucm_modified.json``: ``{"images": [{"filename": "1.tif",
"split": "train"|"val"|"test", "sentences": [{"raw": ...}, x5]}]}``; images through
``ucm_numbered_filenames.json``. One record per image: ``answer`` = the first sentence,
``meta["references"]`` = all of them (for ROUGE / METEOR), ``meta["split"]`` = the official
split (1,680 / 210 / 210), ``meta["class_dir"]`` = the UCMerced class folder. Sentences are
tidied only by removing the space the source puts before punctuation ("farmland ." -> "farmland.").
"""

from __future__ import annotations

import re
from pathlib import Path

from kdlib.data.prompts import CAPTION_QUERY
from kdlib.data.records import Record, check_image, data_error, read_json, require_key
from kdlib.data.scene import read_ucm_numbered, ucm_image

CAPTIONS_FILE = Path("captions") / "ucm_captions" / "dataset_ucm_modified.json"
OFFICIAL_SPLITS = ("train", "val", "test")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")


def tidy_sentence(raw: str) -> str:
    """Strip and drop spaces before punctuation: ``"There is a beach ."`` -> ``"There is a beach."``."""
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(raw.split()))


def read_ucm_captions(root: Path | str, check_images: bool = True) -> list[Record]:
    """All UCM-captions images as caption records, in file order, with the official split in meta."""
    path = Path(root) / CAPTIONS_FILE
    images = require_key(read_json(path), "images", path, "top level")
    numbered = read_ucm_numbered(root)
    records = []
    for i, entry in enumerate(images):
        where = f"images[{i}]"
        name = require_key(entry, "filename", path, where)
        split = require_key(entry, "split", path, where)
        if split not in OFFICIAL_SPLITS:
            raise data_error(path, where, f"unknown split {split!r}; expected one of {OFFICIAL_SPLITS}")
        sentences = require_key(entry, "sentences", path, where)
        if not isinstance(sentences, list) or not sentences:
            raise data_error(path, where, "key 'sentences' must be a non-empty list")
        refs = [tidy_sentence(str(require_key(s, "raw", path, f"{where}.sentences[{j}]")))
                for j, s in enumerate(sentences)]
        image = ucm_image(numbered, name, path, where)
        if check_images:
            check_image(image, path, where)
        records.append(Record(
            id=f"ucm_captions/{name}", task="caption", image=image, question=CAPTION_QUERY, answer=refs[0],
            meta={"dataset": "ucm_captions", "split": split, "references": refs, "ucm_name": name,
                  "class_dir": image.parent.name},
        ))
    return records
