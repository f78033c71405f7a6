"""GeoChat prompt texts and the Vicuna-v1 chat format."""

from __future__ import annotations

from kdlib.data import SYSTEM, render_conversation, render_turn, scene_query, vqa_query
from kdlib.data.prompts import chat_text, grounding_query, identify_query, refer_query


def test_single_turn_format():
    prompt, target = render_turn("<image>\nIs there a road?", "yes")
    assert prompt == f"{SYSTEM} USER: <image>\nIs there a road? ASSISTANT:"
    assert target == " yes</s>"
    assert render_turn("q", None)[1] == ""
    assert render_turn("q", "a", eos="<|im_end|>")[1] == " a<|im_end|>"
    assert chat_text("Is there a road?", "yes") == prompt + target


def test_multi_turn_format_matches_vicuna_v1():
    conv = [{"from": "human", "value": "<image>\nq1"}, {"from": "gpt", "value": "a1"},
            {"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2"}]
    text = "".join(p + t for p, t in render_conversation(conv))
    assert text == f"{SYSTEM} USER: <image>\nq1 ASSISTANT: a1</s>USER: q2 ASSISTANT: a2</s>"


def test_geochat_queries():
    assert vqa_query("Is there a road? ") == "Is there a road?\nAnswer the question using a single word or phrase."
    assert scene_query(["beach", "golf course"]) == (
        "beach, golf course\nClassify the image from the following classes. Answer in one word or a short phrase.")
    assert refer_query("2 ships at the left") == "[refer] Give me the location of <p> 2 ships at the left </p>"
    assert grounding_query("2 ships") == "[grounding]2 ships"
    assert identify_query("{<1><2><3><4>|<90>}") == "[identify] What is the object present at {<1><2><3><4>|<90>}"
