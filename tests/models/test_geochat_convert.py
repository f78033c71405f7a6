"""The converter against an independent GeoChat forward: tower -> layer -2 -> drop CLS ->
projector -> splice at the -200 placeholder -> LLaMA, on a tiny checkpoint in GeoChat's layout."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from kdlib.cli import main
from kdlib.models import convert_geochat, load_mllm

IMAGE_INDEX = -200  # GeoChat's IMAGE_TOKEN_INDEX
OLD_SIZE, NEW_SIZE, PATCH = 32, 48, 8  # 4 x 4 grid (17 rows) re-interpolated to 6 x 6 (37 rows)
WORDS = ["<unk>", "<s>", "</s>", "USER:", "ASSISTANT:", "what", "is", "this", "a", "plane", "road", "yes"]


def _tower():
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                              image_size=OLD_SIZE, patch_size=PATCH)
    return CLIPVisionModel(config).eval()


def _llama():
    config = LlamaConfig(vocab_size=len(WORDS), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, bos_token_id=1, eos_token_id=2,
                         tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


def _write_shards(folder, state, fmt):
    keys = sorted(state)
    halves = {f"{i + 1:05d}": keys[i::2] for i in range(2)}
    weight_map = {}
    for index, part in halves.items():
        name = (f"model-{index}-of-00002.safetensors" if fmt == "safetensors"
                else f"pytorch_model-{index}-of-00002.bin")
        tensors = {k: state[k].contiguous() for k in part}
        save_file(tensors, folder / name) if fmt == "safetensors" else torch.save(tensors, folder / name)
        weight_map.update({k: name for k in part})
    index_name = "model.safetensors.index.json" if fmt == "safetensors" else "pytorch_model.bin.index.json"
    (folder / index_name).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def write_geochat_checkpoint(folder, fmt="safetensors", with_tower=True):
    """A GeoChat-layout folder: LLaMA keys, model.mm_projector.{0,2}, the CLIP tower under
    model.vision_tower.vision_tower.vision_model.* (un-interpolated table), the tower model in
    ./clip (mm_vision_tower), a tokenizer without <image>. Returns the reference pieces."""
    torch.manual_seed(0)
    folder.mkdir()
    tower, llama = _tower(), _llama()
    tower.save_pretrained(folder / "clip")
    proj = {"0.weight": torch.randn(48, 32) * 0.2, "0.bias": torch.randn(48) * 0.1,
            "2.weight": torch.randn(48, 48) * 0.2, "2.bias": torch.randn(48) * 0.1}
    state = dict(llama.state_dict())
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(6)  # old transformers saved it
    state.update({f"model.mm_projector.{k}": v for k, v in proj.items()})
    if with_tower:
        state.update({"model.vision_tower.vision_tower.vision_model." + k.removeprefix("vision_model."): v
                      for k, v in tower.state_dict().items()})
    _write_shards(folder, state, fmt)
    config = {**llama.config.to_dict(), "model_type": "geochat", "architectures": ["GeoChatLlamaForCausalLM"],
              "mm_vision_tower": "clip", "mm_hidden_size": 32, "mm_projector_type": "mlp2x_gelu",
              "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch", "mm_use_im_start_end": False,
              "mm_use_im_patch_token": False, "image_aspect_ratio": "pad", "use_mm_proj": True}
    (folder / "config.json").write_text(json.dumps(config))
    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(folder)
    return tower, llama, proj


def _resize_table(table, grid):
    """GeoChat's interpolation, written independently: CLS kept, grid resized bicubic, align_corners."""
    side = int((table.shape[0] - 1) ** 0.5)
    image = table[1:].reshape(side, side, -1).permute(2, 0, 1)[None]
    image = F.interpolate(image, size=(grid, grid), mode="bicubic", align_corners=True)
    return torch.cat([table[:1], image[0].permute(1, 2, 0).reshape(grid * grid, -1)])


def reference_logits(tower, llama, proj, ids, pixels):
    config = CLIPVisionConfig(**{**tower.config.to_dict(), "image_size": NEW_SIZE})
    big = CLIPVisionModel(config).eval()
    state = dict(tower.state_dict())
    key = next(k for k in state if k.endswith("position_embedding.weight"))
    state[key] = _resize_table(state[key], NEW_SIZE // PATCH)
    big.load_state_dict(state)
    feats = big(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
    z = F.linear(F.gelu(F.linear(feats, proj["0.weight"], proj["0.bias"])), proj["2.weight"], proj["2.bias"])
    embed = llama.get_input_embeddings()
    rows = []
    for b, row in enumerate(ids):
        at = int((row == IMAGE_INDEX).nonzero())
        rows.append(torch.cat([embed(row[:at]), z[b], embed(row[at + 1:])]))
    return llama(inputs_embeds=torch.stack(rows)).logits


@pytest.mark.parametrize("fmt,with_tower", [("safetensors", True), ("bin", False)])
def test_converted_checkpoint_matches_geochat_forward(tmp_path, fmt, with_tower):
    tower, llama, proj = write_geochat_checkpoint(tmp_path / "geochat", fmt, with_tower)
    out = convert_geochat(tmp_path / "geochat", tmp_path / "llava", image_size=NEW_SIZE, dtype="float32")
    loaded = load_mllm(out)  # strict: no missing / unexpected / mismatched keys
    model, tok = loaded.model, loaded.tokenizer
    image_id = tok.convert_tokens_to_ids("<image>")
    assert model.config.image_token_id == image_id == len(WORDS)
    assert model.config.vision_config.image_size == NEW_SIZE
    assert loaded.image_processor.crop_size == {"height": NEW_SIZE, "width": NEW_SIZE}
    assert tok.pad_token == "<unk>"
    ids = torch.tensor([[1, 3, IMAGE_INDEX, 5, 6, 7, 4, 8], [1, 3, IMAGE_INDEX, 10, 6, 7, 4, 11]])
    pixels = torch.randn(2, 3, NEW_SIZE, NEW_SIZE)
    n = (NEW_SIZE // PATCH) ** 2
    expanded = torch.stack([torch.cat([r[:2], torch.full((n,), image_id), r[3:]]) for r in ids])
    with torch.no_grad():
        ours = model(input_ids=expanded, pixel_values=pixels).logits[..., : len(WORDS)]
        torch.testing.assert_close(ours, reference_logits(tower, llama, proj, ids, pixels), atol=1e-4, rtol=0)


def test_cli_converts_and_writes_no_bfloat16(tmp_path, capsys):
    write_geochat_checkpoint(tmp_path / "geochat")
    assert main(["convert-geochat", str(tmp_path / "geochat"), str(tmp_path / "out"), "--image-size",
                 str(NEW_SIZE), "--dtype", "float16"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert load_mllm(tmp_path / "out").model.dtype == torch.float16


def test_unknown_keys_and_projectors_are_clear_errors(tmp_path, capsys):
    write_geochat_checkpoint(tmp_path / "g")
    config = json.loads((tmp_path / "g" / "config.json").read_text())
    (tmp_path / "g" / "config.json").write_text(json.dumps({**config, "mm_projector_type": "linear"}))
    assert main(["convert-geochat", str(tmp_path / "g"), str(tmp_path / "o")]) == 2
    assert "mlp2x_gelu" in capsys.readouterr().err
    (tmp_path / "g" / "config.json").write_text(json.dumps(config))
    extra = tmp_path / "g" / "model.safetensors.index.json"
    index = json.loads(extra.read_text())
    save_file({"model.extra_head.weight": torch.zeros(2)}, tmp_path / "g" / "extra.safetensors")
    weight_map = {**index["weight_map"], "model.extra_head.weight": "extra.safetensors"}
    extra.write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ValueError, match=r"unexpected \['model.language_model.extra_head.weight'\]"):
        convert_geochat(tmp_path / "g", tmp_path / "o", image_size=NEW_SIZE)
    assert not (tmp_path / "o").exists()
