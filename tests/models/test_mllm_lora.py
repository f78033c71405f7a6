import pytest
import torch
from peft import PeftModel

from kdlib.models import apply_lora, freeze, load_mllm, mllm_forward, save_mllm, trainable_parameters
from kdlib.profiles import LoRASpec


def _lm_loss(out, ids):
    return torch.nn.functional.cross_entropy(out.logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())


def test_lora_adapters_sit_on_every_llm_linear_and_only_there(pair):
    model = apply_lora(pair.student, LoRASpec(r=4, alpha=8, dropout=0.0))
    assert isinstance(model, PeftModel)
    names = trainable_parameters(model)
    adapted = {n.split(".lora_")[0] for n in names if ".lora_" in n}
    layers = pair.student.config.text_config.num_hidden_layers
    wanted = {f"base_model.model.model.language_model.layers.{i}.{part}"
              for i in range(layers) for part in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                  "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")}
    assert adapted == wanted
    others = {n for n in names if ".lora_" not in n}
    assert others and all(".multi_modal_projector." in n for n in others)
    assert not any("lm_head" in n or "vision_tower" in n for n in names)
    assert not any(n.endswith("base_layer.weight") for n in names)


def test_full_finetuning_when_rank_is_zero(pair):
    model = apply_lora(pair.student, LoRASpec(r=0))
    names = trainable_parameters(model)
    assert model is pair.student
    assert "lm_head.weight" in names and "model.multi_modal_projector.linear_1.weight" in names
    assert not any("vision_tower" in n for n in names)
    assert len(names) == sum(1 for n, _ in model.named_parameters() if "vision_tower" not in n)


def test_frozen_teacher_gets_no_gradient(pair, make_batch):
    teacher, student = freeze(pair.teacher), apply_lora(pair.student, LoRASpec(r=0))
    ids, mask, pixels = make_batch(student)
    assert not trainable_parameters(teacher) and not teacher.training
    t_logp = mllm_forward(teacher, ids, pixels, mask).logits.log_softmax(-1)
    s_logp = mllm_forward(student, ids, pixels, mask).logits.log_softmax(-1)
    (s_logp.exp() * (s_logp - t_logp)).sum(-1).mean().backward()  # reverse KL through both
    assert all(p.grad is None for p in teacher.parameters())
    assert student.lm_head.weight.grad is not None


def test_saved_lora_model_is_merged_and_training_state_kept(pair, make_batch, tmp_path):
    model = apply_lora(pair.student, LoRASpec(r=4, alpha=8, dropout=0.0))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    model.eval()
    ids, mask, pixels = make_batch(model)
    with torch.no_grad():
        expected = mllm_forward(model, ids, pixels, mask).logits
        save_mllm(tmp_path / "merged", model, pair.tokenizer, pair.image_processor)
        loaded = load_mllm(tmp_path / "merged").model
        torch.testing.assert_close(mllm_forward(loaded, ids, pixels, mask).logits, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mllm_forward(model, ids, pixels, mask).logits, expected, atol=0, rtol=0)
    assert isinstance(model, PeftModel) and trainable_parameters(model)


def test_lora_twice_is_an_error(pair):
    model = apply_lora(pair.student, LoRASpec(r=2))
    with pytest.raises(ValueError, match="already"):
        apply_lora(model, LoRASpec(r=2))
