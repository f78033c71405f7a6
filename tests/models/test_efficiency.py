import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from kdlib.cli import main
from kdlib.models import build_pair, image_token_id
from kdlib.models.efficiency import count_model, efficiency_table


def _run_json(capsys, *args):
    assert main(["efficiency", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_parts_add_up_to_a_whole_forward_of_the_real_model(tiny, tokenizer):
    model = build_pair(tiny, tokenizer, attn_implementation="eager").teacher.eval()
    text_len, n = 20, tiny.vision.num_image_tokens
    counted = count_model(model, text_len)
    ids = torch.full((1, n + text_len), 7)
    ids[0, 1:1 + n] = image_token_id(model)
    pixels = torch.zeros(1, 3, tiny.vision.image_size, tiny.vision.image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=ids, pixel_values=pixels)
    assert counted["flops_G"] == round(counter.get_total_flops() / 1e9, 2)
    assert sum(p["flops_G"] for p in counted["parts"].values()) == pytest.approx(counted["flops_G"], abs=0.02)
    assert counted["params_M"] == round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    assert counted["parts"]["llm"]["flops_G"] > counted["paper_convention"]["flops_G"]  # image positions add work


def test_tiny_cli_reports_both_models_the_input_and_a_table(capsys, tiny):
    out = _run_json(capsys, "--profile", "tiny", "--text-len", "32")
    assert out["input"]["image_tokens"] == tiny.vision.num_image_tokens
    assert out["input"]["llm_positions"] == tiny.vision.num_image_tokens + 32
    assert out["teacher"]["params_M"] > out["student"]["params_M"] > 0
    assert out["teacher"]["flops_G"] > out["student"]["flops_G"] > 0
    table = efficiency_table(out)
    assert "paper params M" in table and "+ 32 text tokens" in table
    assert f"{out['student']['params_M']:.2f}" in table.splitlines()[3]


def test_paper_profile_on_meta_reproduces_table8_in_the_paper_convention(capsys):
    out = _run_json(capsys, "--profile", "paper")
    assert out["input"]["device"] == "meta" and out["input"]["image_tokens"] == 1296
    for role in ("teacher", "student"):
        ours, paper = out[role]["paper_convention"], out["paper_table8"][role]
        assert ours["params_M"] == pytest.approx(paper["params_M"], abs=0.01)
        assert ours["flops_G"] == pytest.approx(paper["flops_G"], rel=5e-4)
        assert out[role]["flops_G"] > 3 * paper["flops_G"]  # the image's 1,296 positions dominate


def test_bad_text_length_is_one_clear_line(capsys):
    assert main(["efficiency", "--profile", "tiny", "--text-len", "0"]) == 2
    assert "text_len 0" in capsys.readouterr().err
