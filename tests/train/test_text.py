"""Text-only distillation of two plain causal LMs saved with ``save_pretrained`` (API and CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from kdlib.cli import main
from kdlib.data.records import DataError
from kdlib.data.text_pairs import TextCollator, TextPair, read_text_pairs
from kdlib.models.causal import load_causal_pair, load_tokenizer
from kdlib.models.tokenizer import build_tokenizer
from kdlib.profiles import get_profile
from kdlib.train.forward import features, output_head, shift_for_labels
from kdlib.losses import chunked_divergence
from kdlib.train.metrics_log import read_metrics
from kdlib.train.text import distill_text

WORDS = ["river", "forest", "runway", "harbor", "beach", "field", "road", "roof", "tree", "ship"]
OVERRIDES = {"data.max_length": 48, "train.batch_size": 4, "train.kd_steps": 8, "train.max_new_tokens": 6,
             "train.warmup_ratio": 0.0, "train.kd_lr": 3e-3}


def _pairs() -> list[dict]:
    return [{"prompt": f"what is next to the {a}?", "response": f"a {b} and a {c} near the {a}."}
            for i, a in enumerate(WORDS) for b, c in [(WORDS[(i + 1) % 10], WORDS[(i + 3) % 10])]]


def _llama(tokenizer, layers: int, width: int, seed: int, init: float = 0.02) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width,
                         initializer_range=init,
                         num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=128, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config)


@pytest.fixture(scope="module")
def pair_dirs(tmp_path_factory) -> dict[str, Path]:
    """A random teacher (3 layers, width 64, large weights: peaked, far from the student) and student
    (1 layer, width 32) with one tokenizer, plus JSONL data."""
    root = tmp_path_factory.mktemp("textkd")
    rows = _pairs()
    tokenizer = build_tokenizer([r["prompt"] + " " + r["response"] for r in rows], 300)
    dirs = {"teacher": root / "teacher", "student": root / "student", "data": root / "pairs.jsonl"}
    for name, (layers, width, seed, init) in {"teacher": (3, 64, 0, 0.2), "student": (1, 32, 1, 0.02)}.items():
        _llama(tokenizer, layers, width, seed, init).save_pretrained(dirs[name])
        tokenizer.save_pretrained(dirs[name])
    dirs["data"].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dirs


def _student_teacher_kl(student, teacher, tokenizer, pairs: list[TextPair]) -> float:
    """Token-mean ``KL(q || p)`` of the student against the teacher on the reference responses."""
    batch = TextCollator(tokenizer, 48)(pairs)
    with torch.no_grad():
        fs = features(student.eval(), batch["input_ids"], batch["attention_mask"])
        ft = features(teacher.eval(), batch["input_ids"], batch["attention_mask"])
        _, _, mask = shift_for_labels(fs.hidden, batch["labels"])
        return float(chunked_divergence(fs.hidden[:, :-1][mask], output_head(student), ft.hidden[:, :-1][mask],
                                        output_head(teacher)))


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_paper_method_through_the_api_moves_the_student_toward_the_teacher(pair_dirs, tmp_path):
    pair = load_causal_pair(pair_dirs["teacher"], pair_dirs["student"])
    pairs = read_text_pairs(pair_dirs["data"])
    before_kl = _student_teacher_kl(pair.student, pair.teacher, pair.tokenizer, pairs)
    before = _weights(pair.student)
    profile = get_profile("tiny", OVERRIDES)
    result = distill_text(pair.teacher, pair.student, pairs, tmp_path / "run", profile, "paper",
                          tokenizer=pair.tokenizer, progress=False, steps=16)
    rows = read_metrics(result.metrics)
    assert len(rows) == 16 and {"single", "long", "lm"} <= set(rows[0]) and "align" not in rows[0]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")
    moved = [k for k, v in saved.state_dict().items() if not torch.equal(v, before[k])]
    assert len(moved) == len(before)
    after_kl = _student_teacher_kl(saved, pair.teacher, pair.tokenizer, pairs)
    assert after_kl < before_kl
    single = [r["single"] for r in rows]
    assert sum(single[-4:]) < sum(single[:4])


def test_reverse_kl_through_the_cli_lowers_the_loss(pair_dirs, tmp_path):
    sets = [x for k, v in OVERRIDES.items() for x in ("--set", f"{k}={v}")]
    out = tmp_path / "cli"
    code = main(["train", "--profile", "tiny", *sets, "--set", "train.kd_steps=12", "--method", "reverse_kl",
                 "--teacher", str(pair_dirs["teacher"]), "--student", str(pair_dirs["student"]),
                 "--data", str(pair_dirs["data"]), "--out", str(out), "--no-progress"])
    assert code == 0
    losses = [r["loss"] for r in read_metrics(out / "metrics.jsonl")]
    assert len(losses) == 12
    assert sum(losses[-3:]) < sum(losses[:3])
    start = AutoModelForCausalLM.from_pretrained(pair_dirs["student"]).state_dict()
    trained = AutoModelForCausalLM.from_pretrained(out / "model").state_dict()
    assert any(not torch.equal(start[k], trained[k]) for k in start)


def test_a_bad_jsonl_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n\n{"prompt": "c"}\n')
    with pytest.raises(DataError, match=rf"^{path}: line 3: field 'response' must be a string"):
        read_text_pairs(path)
    path.write_text('{"prompt": "a", "response": "b"}\nnot json\n')
    with pytest.raises(DataError, match=r": line 2: not valid JSON"):
        read_text_pairs(path)


def test_a_pair_with_two_tokenizers_is_refused_naming_both(pair_dirs, tmp_path):
    other = build_tokenizer(["completely different words here"] * 4, 280)
    _llama(other, 1, 32, 2).save_pretrained(tmp_path / "other")
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match=rf"^teacher {pair_dirs['teacher']} and student {tmp_path / 'other'} "
                                         "do not share a tokenizer"):
        load_causal_pair(pair_dirs["teacher"], tmp_path / "other")
    code = main(["train", "--method", "paper", "--teacher", str(pair_dirs["teacher"]), "--student",
                 str(tmp_path / "other"), "--data", str(pair_dirs["data"]), "--out", str(tmp_path / "o")])
    assert code == 2


def test_the_collator_labels_only_the_response(pair_dirs):
    tokenizer = load_tokenizer(pair_dirs["teacher"])
    pair = TextPair("what is next to the river?", "a forest.")
    batch = TextCollator(tokenizer, 48)([pair])
    prompt = TextCollator(tokenizer, 48, "generate")([pair])["input_ids"][0].tolist()
    labelled = batch["labels"][0][batch["labels"][0] != -100].tolist()
    assert batch["input_ids"][0].tolist() == prompt + labelled
    assert tokenizer.decode(labelled, skip_special_tokens=True) == "a forest."
    assert labelled[-1] == tokenizer.eos_token_id
