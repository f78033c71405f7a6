"""Fixtures of the analysis tests: a few scene records on small PNGs and the tiny pair with 16 image tokens."""

from __future__ import annotations

import pytest
from PIL import Image

from kdlib.data.prompts import chat_text, scene_query
from kdlib.data.records import Record
from kdlib.models.build import build_pair
from kdlib.models.io import LoadedMLLM
from kdlib.models.tokenizer import build_tokenizer
from kdlib.profiles import get_profile

CLASSES = ("airplane", "beach", "forest", "harbor")


@pytest.fixture(scope="session")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[Record]:
    """Four UCMerced-like scene records, one per class, on images of different colours and sizes; the class
    lists differ in length, so a batch of their prompts is padded."""
    folder = tmp_path_factory.mktemp("images")
    out = []
    for i, name in enumerate(CLASSES):
        path = folder / name / f"{name}00.png"
        path.parent.mkdir()
        Image.new("RGB", (40 + 8 * i, 48), (60 * i, 200 - 40 * i, 90)).save(path)
        classes = CLASSES[i:] + CLASSES[:i] * (i % 2)
        out.append(Record(id=f"s{i}", task="scene", image=path, question=scene_query(classes), answer=name,
                          meta={"dataset": "ucmerced", "class_dir": name, "label": i}))
    return out


@pytest.fixture(scope="session")
def profile():
    return get_profile("tiny", {"vision.image_size": 32})  # 16 image tokens on a 4 x 4 grid


@pytest.fixture(scope="session")
def pair(profile, records):
    tokenizer = build_tokenizer([chat_text(r.question, r.answer) for r in records] * 3, profile.vocab_size)
    return build_pair(profile, tokenizer, seed=1)


@pytest.fixture(scope="session")
def student(pair) -> LoadedMLLM:
    return LoadedMLLM(pair.student.eval(), pair.tokenizer, pair.image_processor)


@pytest.fixture(scope="session")
def teacher(pair) -> LoadedMLLM:
    return LoadedMLLM(pair.teacher.eval(), pair.tokenizer, pair.image_processor)
