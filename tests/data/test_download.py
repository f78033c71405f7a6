"""Optional downloads: atomic, checksum-verified, tested on file:// URLs (no network)."""

from __future__ import annotations

import hashlib
import json

import pytest

from kdlib.data.download import SOURCES, download, fetch, zenodo_files


def test_download_verifies_and_is_atomic(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"remote sensing" * 1000)
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    dest = download(source.as_uri(), tmp_path / "cache" / "file.bin", f"sha256:{sha}")
    assert dest.read_bytes() == source.read_bytes()
    source.write_bytes(b"changed")  # a matching cached file is kept, not fetched again
    assert download(source.as_uri(), dest, f"sha256:{sha}").read_bytes() != b"changed"
    with pytest.raises(ValueError, match="does not match"):
        download(source.as_uri(), tmp_path / "cache" / "bad.bin", f"sha256:{sha}")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["file.bin"]  # nothing half-written
    md5 = hashlib.md5(b"changed").hexdigest()
    assert download(source.as_uri(), tmp_path / "cache" / "m.bin", f"md5:{md5}").read_bytes() == b"changed"
    with pytest.raises(ValueError, match="must be 'sha256"):
        download(source.as_uri(), tmp_path / "x", "crc:1")


def test_source_table_is_honest(tmp_path, monkeypatch):
    assert SOURCES["ucmerced_zip"].checksum is None and SOURCES["rsvqa_lr_record"].checksum is None
    assert all(s.checksum is None or s.checksum.startswith("sha256:") for s in SOURCES.values())
    with pytest.raises(KeyError, match="unknown source"):
        fetch("imagenet", tmp_path)


def test_zenodo_record_listing(tmp_path):
    record = {"files": [{"key": "Images_LR.zip", "links": {"self": "https://zenodo.org/x/Images_LR.zip"},
                         "checksum": "md5:0123"}]}
    path = tmp_path / "record.json"
    path.write_text(json.dumps(record))
    files = zenodo_files(path)
    assert files["Images_LR.zip"].url.endswith("Images_LR.zip") and files["Images_LR.zip"].checksum == "md5:0123"
