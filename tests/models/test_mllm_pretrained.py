"""The pretrained path (``small`` extension point, ``paper`` loading) on tiny local models."""

import huggingface_hub
import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

from kdlib.models import MissingModelError, build_pair, check_same_vocab, mllm_forward
from kdlib.models.build import clip_image_processor
from kdlib.profiles import get_profile


@pytest.fixture
def model_root(tmp_path, monkeypatch, tokenizer):
    """``$KDLIB_MODEL_ROOT`` with org/llm (3-layer LLaMA + tokenizer) and org/clip (CLIP tower)."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("KDLIB_MODEL_ROOT", str(tmp_path))
    torch.manual_seed(0)
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=2))
    llm.save_pretrained(tmp_path / "org" / "llm")
    tokenizer.save_pretrained(tmp_path / "org" / "llm")
    clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                            num_attention_heads=2, image_size=56, patch_size=14))
    clip.save_pretrained(tmp_path / "org" / "clip")
    clip_image_processor(56).save_pretrained(tmp_path / "org" / "clip")
    return llm


def _small(**changes):
    base = {"vision.name_or_path": "org/clip", "vision.image_size": "56",
            "vision.pool_grid": "0", "teacher.name_or_path": "org/llm", "student.name_or_path": "org/llm",
            "student.keep_layers": "0,2"}
    return get_profile("small", {**base, **changes})


def test_student_is_the_teacher_llm_with_layers_removed(model_root, make_batch):
    pair = build_pair(_small())
    teacher, student = pair.teacher, pair.student
    assert len(student.model.language_model.layers) == student.config.text_config.num_hidden_layers == 2
    source = model_root.state_dict()
    for new, old in ((0, 0), (1, 2)):
        ours = student.model.language_model.layers[new].mlp.down_proj.weight
        assert torch.equal(ours, source[f"model.layers.{old}.mlp.down_proj.weight"])
    assert torch.equal(teacher.lm_head.weight, source["lm_head.weight"])
    check_same_vocab(teacher, student)
    ids, mask, pixels = make_batch(student)
    out = mllm_forward(student, ids, pixels, mask, use_cache=True)
    assert out.projector.shape == (2, 16, 32)
    step = mllm_forward(student, ids[:, -1:], attention_mask=torch.cat([mask, mask[:, -1:]], 1),
                        past_key_values=out.past_key_values, use_cache=True)
    assert step.logits.shape[:2] == (2, 1)


def test_pooled_tower_gives_grid_squared_image_tokens(model_root, make_batch):
    pair = build_pair(_small(**{"vision.pool_grid": "2"}))
    ids, mask, pixels = make_batch(pair.student)
    out = mllm_forward(pair.student, ids, pixels, mask)
    assert out.projector.shape == (2, 4, 32)  # 4 x 4 patches averaged to 2 x 2


def test_pool_grid_must_divide_the_patch_grid(model_root):
    with pytest.raises(ValueError, match="pool_grid=3 must divide the 4 x 4 patch grid"):
        build_pair(_small(**{"vision.pool_grid": "3"}))


def test_missing_models_say_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("KDLIB_MODEL_ROOT", str(tmp_path))
    small = get_profile("small", {"vision.pool_grid": "0"})
    with pytest.raises(MissingModelError, match=rf"KDLIB_MODEL_ROOT to a folder holding {small.teacher.name_or_path}"):
        build_pair(small)
    with pytest.raises(ValueError, match="teacher.name_or_path is empty.*convert-geochat"):
        build_pair(get_profile("paper"))


def test_model_provenance_reads_each_folders_note(model_root, tmp_path):
    from kdlib.models.io import model_provenance

    (tmp_path / "org" / "llm" / "PROVENANCE.md").write_text("# org/llm\n\nrebuilt from a 4-bit file\n")
    notes = model_provenance(_small())
    assert list(notes) == ["org/clip", "org/llm"]
    assert notes["org/llm"] == "# org/llm\n\nrebuilt from a 4-bit file"
    assert notes["org/clip"] == f"local folder {tmp_path / 'org' / 'clip'} (no PROVENANCE.md)"
    assert model_provenance(get_profile("paper")) == {
        "openai/clip-vit-large-patch14-336": "the Hugging Face hub release openai/clip-vit-large-patch14-336 "
                                             "(or its local cache)",
        "MBZUAI/geochat-7B": "the Hugging Face hub release MBZUAI/geochat-7B (or its local cache)"}
