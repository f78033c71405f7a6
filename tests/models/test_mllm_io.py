import json

import huggingface_hub
import pytest
import torch

from kdlib.models import MissingModelError, load_mllm, mllm_forward, save_mllm


def test_save_then_load_gives_identical_logits(pair, make_batch, tmp_path):
    model = pair.student.eval()
    ids, mask, pixels = make_batch(model)
    folder = save_mllm(tmp_path / "student", model, pair.tokenizer, pair.image_processor)
    loaded = load_mllm(folder)
    assert loaded.tokenizer.get_vocab() == pair.tokenizer.get_vocab()
    assert loaded.image_processor.crop_size == pair.image_processor.crop_size
    assert not any(p.requires_grad for p in loaded.model.model.vision_tower.parameters())
    with torch.no_grad():
        torch.testing.assert_close(mllm_forward(loaded.model, ids, pixels, mask).logits,
                                   mllm_forward(model, ids, pixels, mask).logits, atol=0, rtol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["student"]  # no temp folder left


def test_saving_again_replaces_the_folder_atomically(pair, tiny, tokenizer, tmp_path):
    save_mllm(tmp_path / "m", pair.student, tokenizer, pair.image_processor)
    save_mllm(tmp_path / "m", pair.teacher, tokenizer, pair.image_processor)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["text_config"]["num_hidden_layers"] == tiny.teacher.num_layers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_dtype_and_eager_attention_on_load(pair, tmp_path):
    folder = save_mllm(tmp_path / "s", pair.student, pair.tokenizer, pair.image_processor)
    loaded = load_mllm(folder, dtype=torch.float16, attn_implementation="eager")
    assert loaded.model.dtype == torch.float16
    assert loaded.model.model.language_model.config._attn_implementation == "eager"


def test_neither_layout_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    with pytest.raises(ValueError, match=r"neither a LlavaForConditionalGeneration.*mm_vision_tower.*'bert'"):
        load_mllm(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "geochat", "mm_vision_tower": "x"}))
    with pytest.raises(ValueError, match="kdlib convert-geochat"):
        load_mllm(tmp_path)


def test_folder_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_mllm(tmp_path)


def test_missing_model_names_kdlib_model_root(monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("KDLIB_MODEL_ROOT", str(tmp_path))
    with pytest.raises(MissingModelError, match="set KDLIB_MODEL_ROOT to a folder holding kdlib-test/absent"):
        load_mllm("kdlib-test/absent")
