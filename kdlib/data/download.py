"""Optional download of the official data files, for users without a prepared data root.

Nothing here runs at import time. :func:`download` fetches one URL into a cache folder
atomically (temp file + rename) and verifies a checksum when one is known; :func:`fetch` does
so for a named entry of :data:`SOURCES`.

:data:`SOURCES` is honest about what is known: a ``checksum`` is given only where kdlib has the
bytes (the files copied byte for byte into ``shared/data``, whose sha256 ``manifest.json``
records); the UCMerced zip's and the Zenodo files' checksums are ``None`` (unknown here), and
then nothing is verified unless the caller passes one. Zenodo records are fetched as their API
JSON, which lists every file with its download link and md5 (:func:`zenodo_files`). The
archives still have to be unpacked into the layout of ``docs/data.md`` (e.g. UCMerced TIFFs
under ``ucmerced/<class>/``).
"""

from __future__ import annotations

import hashlib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kdlib.data.records import data_error, read_json
from kdlib.files import atomic_path

_GITHUB = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class Source:
    """One downloadable file: URL, file name in the cache, ``"algo:hex"`` checksum or None."""

    url: str
    filename: str
    checksum: str | None
    note: str = ""


SOURCES: dict[str, Source] = {
    "ucmerced_zip": Source("http://weegee.vision.ucmerced.edu/datasets/UCMerced_LandUse.zip",
                           "UCMerced_LandUse.zip", None, "official zip (TIFF images); checksum unknown"),
    "rsvqa_lr_record": Source("https://zenodo.org/api/records/6344334", "rsvqa_lr_zenodo.json", None,
                              "Zenodo record of RSVQA-LR: file list with links and md5"),
    "rsvqa_hr_record": Source("https://zenodo.org/api/records/6344367", "rsvqa_hr_zenodo.json", None,
                              "Zenodo record of RSVQA-HR: file list with links and md5"),
    "ucm_captions": Source(
        f"{_GITHUB}/Jbarata98/remote-sensing-image-captioning/fe94764389ee678cd473571942a08f861f566174/"
        "captions/dataset_ucm_modified.json", "dataset_ucm_modified.json",
        "sha256:48eac0fc3b1860b49256be86654abef48a9b2c8a7dde3c3b66b4637834b1c680"),
    "rsivqa_ucm_vqa": Source(
        f"{_GITHUB}/spectralpublic/RSIVQA/ed4ad129e53e1fc39ec6d66417a3f046b0ea254c/RSIVQA/UCM/ucm_vqa.txt",
        "ucm_vqa.txt", "sha256:7e615d66f50f2b8ef7d08621530692b4f7519659a0b66c1e954272a0dcd6d6b6"),
    "rsivqa_ucm_res": Source(
        f"{_GITHUB}/spectralpublic/RSIVQA/ed4ad129e53e1fc39ec6d66417a3f046b0ea254c/RSIVQA/UCM/ucm_res.txt",
        "ucm_res.txt", "sha256:f6727acd165275385af205bbb6aa63fc89ef1405448d5b36727ac89a833b3798"),
    "dota_p1888_labels": Source(
        f"{_GITHUB}/CAPTAIN-WHU/DOTA_devkit/99388551054be9a6dabb01c8bb2a7eb562d57b4f/example/labelTxt/P1888.txt",
        "P1888.txt", "sha256:ff931f52121c2763205c8f2b2752fbe81b772be026e18aacea5a57ecb3c498cd"),
    "dota_p1888_image": Source(
        f"{_GITHUB}/CAPTAIN-WHU/DOTA_devkit/99388551054be9a6dabb01c8bb2a7eb562d57b4f/example/images/P1888.png",
        "P1888.png", "sha256:697c30cddbf7a779593c045852da7bd34656c212a49dff146c24e5c30aacb950"),
}

_ALGORITHMS = ("sha256", "md5")


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _parse_checksum(checksum: str) -> tuple[str, str]:
    algorithm, sep, value = checksum.partition(":")
    if not sep or algorithm not in _ALGORITHMS or not value:
        raise ValueError(f"checksum {checksum!r} must be 'sha256:<hex>' or 'md5:<hex>'")
    return algorithm, value.lower()


def matches(path: Path, checksum: str | None) -> bool:
    """Whether ``path`` exists and has ``checksum`` (any existing file when ``checksum`` is None)."""
    if not path.is_file():
        return False
    if checksum is None:
        return True
    algorithm, value = _parse_checksum(checksum)
    return file_digest(path, algorithm) == value


def download(url: str, dest: Path | str, checksum: str | None = None, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` atomically; verify ``checksum`` (``"sha256:<hex>"``) when given.

    An existing ``dest`` that matches is kept without a download. A mismatch leaves no file
    behind and raises ``ValueError`` naming the URL and both digests.
    """
    dest = Path(dest)
    if checksum is not None:
        _parse_checksum(checksum)
    if matches(dest, checksum):
        return dest
    with atomic_path(dest) as tmp:
        with tmp.open("wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        if checksum is not None:
            algorithm, value = _parse_checksum(checksum)
            got = file_digest(tmp, algorithm)
            if got != value:
                raise ValueError(f"{url}: {algorithm} {got} does not match the expected {value}")
    return dest


def fetch(name: str, cache_dir: Path | str, checksum: str | None = None) -> Path:
    """Download :data:`SOURCES` entry ``name`` into ``cache_dir``; ``checksum`` overrides the table's."""
    if name not in SOURCES:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
    source = SOURCES[name]
    return download(source.url, Path(cache_dir) / source.filename, checksum or source.checksum)


def zenodo_files(record_json: Path | str) -> dict[str, Source]:
    """The files of a downloaded Zenodo API record as :class:`Source` s (md5 checksums from Zenodo)."""
    path = Path(record_json)
    record = read_json(path)
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, list):
        raise data_error(path, "key 'files'", "expected the list of the record's files")
    out = {}
    for i, entry in enumerate(files):
        try:
            name, url = entry["key"], entry["links"]["self"]
        except (KeyError, TypeError):
            raise data_error(path, f"files[{i}]", "expected keys 'key' and 'links.self'") from None
        out[name] = Source(url, name, entry.get("checksum"), "from the Zenodo record")
    return out
