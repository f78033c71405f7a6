"""GeoChat conversation records: conversion from Records, the GeoChat_Instruct loader, round trip."""

from __future__ import annotations

import json

from kdlib.data import load_geochat_instruct, save_conversations, to_conversation


def test_conversion_is_labelled_and_loads_back(tiny_study, tmp_path):
    records = tiny_study.train[:20] + [r for r in tiny_study.train if r.dataset == "dota"][:2]
    path = save_conversations(records, tmp_path / "out" / "instruct.json")
    assert not [p for p in path.parent.iterdir() if p.name != "instruct.json"]  # no temp file left
    loaded = load_geochat_instruct(path)
    assert [c["id"] for c in loaded] == [r.id for r in records]
    for conv, rec in zip(loaded, records):
        assert conv["conversations"][0] == {"from": "human", "value": f"<image>\n{rec.question}"}
        assert conv["conversations"][1] == {"from": "gpt", "value": rec.answer}
        assert "kdlib conversion" in conv["source"] and rec.dataset in conv["source"]
        assert conv == to_conversation(rec)


def test_loader_reads_geochat_records_with_image_root(tmp_path):
    records = [
        {"id": "P0001", "image": "P0001.png", "conversations": [
            {"from": "human", "value": "<image>\n[refer] Give me the location of <p> the ship </p>"},
            {"from": "gpt", "value": "{<10><20><30><40>|<90>}"},
            {"from": "human", "value": "What colour is it?"}, {"from": "gpt", "value": "white"}]},
        {"id": "text-only", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
    ]
    path = tmp_path / "GeoChat_Instruct.json"
    path.write_text(json.dumps(records))
    (tmp_path / "P0001.png").write_bytes(b"")
    loaded = load_geochat_instruct(path, image_root=tmp_path, check_files=True)
    assert loaded[0]["image"] == str(tmp_path / "P0001.png") and "image" not in loaded[1]
    assert loaded[0]["conversations"] == records[0]["conversations"]
