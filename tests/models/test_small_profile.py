"""The ``small`` profile on the real pretrained models (SmolLM2-135M-Instruct, DINOv2-S/14).

The models come from ``$KDLIB_MODEL_ROOT/<org>/<name>``; these tests skip without them. Offline
copies are built by ``python ../shared/tools/offline-models.py ROOT`` (then KDLIB_MODEL_ROOT=ROOT).
"""

import copy

import huggingface_hub
import numpy as np
import pytest
import torch
from PIL import Image

from kdlib.data.records import Record
from kdlib.data.study import Study
from kdlib.models import MissingModelError, build_pair, check_same_vocab, num_image_tokens
from kdlib.models.io import freeze_vision_tower
from kdlib.models.pooling import inner_tower, projector_inputs
from kdlib.paths import model_root
from kdlib.profiles import get_profile
from kdlib.train.config import TrainConfig
from kdlib.train.batches import ground_truth_micro_batches
from kdlib.train.distill import distill
from kdlib.train.harness import cpu_has_bf16, make_accelerator, train_collator
from kdlib.train.methods import build_objective

HOW = "build them with `python ../shared/tools/offline-models.py ROOT` and set KDLIB_MODEL_ROOT=ROOT"
#: one distillation step of the paper's method, made small: 2 prompts, 4 sampled tokens
STEP = {"train.micro_batch_size": "1", "train.batch_size": "2", "train.kd_steps": "1", "train.max_new_tokens": "4",
        "data.max_length": "48"}  # micro-batch first: each override is validated as it is applied


def _small_models_present() -> None:
    profile = get_profile("small")
    root = model_root()
    if root is None:
        pytest.skip(f"KDLIB_MODEL_ROOT is not set: the small profile's models are needed; {HOW}")
    names = {profile.teacher.name_or_path, profile.student.name_or_path, profile.vision.name_or_path}
    missing = sorted(n for n in names if not (root / str(n)).is_dir())
    if missing:
        pytest.skip(f"{', '.join(missing)} not under KDLIB_MODEL_ROOT={root}; {HOW}")


@pytest.fixture(scope="module")
def small_pair():
    """Teacher and student of ``small`` (read-only: a test that trains copies the student)."""
    _small_models_present()
    return build_pair(get_profile("small", STEP))


def _records(folder, n=2):
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(path)
        records.append(Record(id=f"r{i}", task="scene", image=path, question="What is in the image?",
                              answer="an airport"))
    return records


def test_student_is_the_teacher_with_the_kept_layers_and_one_vocabulary(small_pair):
    profile = get_profile("small")
    teacher, student = small_pair.teacher, small_pair.student
    keep = profile.student.keep_layers
    assert len(student.model.language_model.layers) == student.config.text_config.num_hidden_layers == len(keep)
    assert len(teacher.model.language_model.layers) > len(keep)
    for new, old in enumerate(keep):
        ours = student.model.language_model.layers[new].self_attn.q_proj.weight
        assert torch.equal(ours, teacher.model.language_model.layers[old].self_attn.q_proj.weight)
    check_same_vocab(teacher, student)
    assert student.config.text_config.vocab_size == len(small_pair.tokenizer)
    assert num_image_tokens(teacher) == num_image_tokens(student) == profile.vision.num_image_tokens
    # each LLM has its own projector, D_v -> its width
    for model in (teacher, student):
        first = model.model.multi_modal_projector.linear_1
        assert first.in_features == model.config.vision_config.hidden_size
        assert model.model.multi_modal_projector.linear_2.out_features == model.config.text_config.hidden_size


def test_dinov2_patch_tokens_of_the_penultimate_block_are_pooled(small_pair):
    profile = get_profile("small")
    model = small_pair.student
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8))
    pixels = torch.as_tensor(small_pair.image_processor(images=[image], return_tensors="pt")["pixel_values"])
    assert pixels.shape[-1] == profile.vision.image_size
    side, g = profile.vision.image_size // profile.vision.patch_size, profile.vision.pool_grid
    with torch.no_grad():
        hidden = inner_tower(model)(pixels, output_hidden_states=True).hidden_states[-2]
    patches = hidden[:, 1:].view(1, g, side // g, g, side // g, -1).mean(dim=(2, 4)).reshape(1, g * g, -1)
    torch.testing.assert_close(projector_inputs(model, pixels), patches)
    tower_t, tower_s = (inner_tower(m).state_dict() for m in (small_pair.teacher, small_pair.student))
    assert all(torch.equal(tower_t[k], tower_s[k]) for k in tower_t)


def test_one_distillation_step_trains_the_student_and_not_the_teacher(small_pair, tmp_path):
    profile = get_profile("small", STEP)
    pair = small_pair
    student = copy.deepcopy(pair.student)
    student_before = {n: p.detach().clone() for n, p in student.named_parameters()}
    teacher_before = {n: p.detach().clone() for n, p in pair.teacher.named_parameters()}
    study = Study(train=_records(tmp_path), val=[], test=[])
    cfg = TrainConfig.from_profile(profile, "paper", progress=False)
    result = distill(student, pair.teacher, pair.tokenizer, pair.image_processor, study, cfg, profile,
                     tmp_path / "run", pt_texts=["Many planes are parked at the airport.", "A green field."],
                     device="cpu")
    after = dict(result.model.named_parameters())
    changed = {n for n, p in after.items() if not torch.equal(p, student_before[n])}
    assert any(n.startswith("model.multi_modal_projector") for n in changed)
    assert any(n.startswith("model.language_model.layers") for n in changed)
    assert not any("vision_tower" in n for n in changed)
    assert all(torch.equal(p, teacher_before[n]) for n, p in pair.teacher.named_parameters())


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bf16 instructions, so kdlib trains float32 on it")
def test_bf16_and_float32_sft_steps_agree_on_the_real_teacher(small_pair, tmp_path, bf16_agrees_with_float32):
    """``small`` with ``--set dtype=bfloat16``: one SFT step of the pretrained teacher under CPU bf16 autocast
    agrees with float32 (measured: loss 9.275 vs 9.252, gradient cosine 0.9992, norm ratio 1.0025)."""
    profile = get_profile("small", {**STEP, "dtype": "bfloat16"})
    teacher = copy.deepcopy(small_pair.teacher).eval().requires_grad_(True)  # the distillation test froze it
    freeze_vision_tower(teacher)  # trainable as the study's teacher SFT: LLM and projector
    cfg = TrainConfig.from_profile(profile, "sft", role="teacher", progress=False)
    collate = train_collator(teacher, small_pair.tokenizer, small_pair.image_processor, cfg)
    records = _records(tmp_path)
    micros = ground_truth_micro_batches(records, collate, len(records), 0, make_accelerator(cfg, "cpu"), False)
    bf16_agrees_with_float32(build_objective(teacher, None, cfg), micros, cfg)


def test_without_the_models_small_says_which_is_missing_and_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("KDLIB_MODEL_ROOT", str(tmp_path))
    small = get_profile("small")
    with pytest.raises(MissingModelError, match=rf"{small.teacher.name_or_path}.*set KDLIB_MODEL_ROOT to a folder"):
        build_pair(small)


def test_efficiency_counts_the_real_small_models_once(small_pair):
    from kdlib.models.efficiency import efficiency

    counted = efficiency(get_profile("small"))
    for role in ("teacher", "student"):
        model = getattr(small_pair, role)
        unique = {id(p): p for p in model.parameters()}.values()  # lm_head is tied to the embeddings
        assert counted[role]["params_M"] == pytest.approx(sum(p.numel() for p in unique) / 1e6, abs=0.01)
        llm = {id(p): p for p in [*model.model.language_model.parameters(), *model.lm_head.parameters()]}.values()
        assert counted[role]["parts"]["llm"]["params_M"] == pytest.approx(sum(p.numel() for p in llm) / 1e6, abs=0.01)
    assert counted["input"]["image_tokens"] == num_image_tokens(small_pair.student)


def test_geollava_pruning_runs_on_the_dinov2_student(small_pair, tmp_path):
    """The related-methods chapter prunes the small student's visual tokens (DINOv2 tower, pooled grid)."""
    from kdlib.analysis.pruning_eval import PrunedMLLM
    from kdlib.data.collate import Collator

    records, n = _records(tmp_path), num_image_tokens(small_pair.student)
    batch = Collator(small_pair.tokenizer, small_pair.image_processor, n, 200)(records)
    pruned = PrunedMLLM(small_pair.student, 8)
    with torch.no_grad():
        out = pruned(**batch)
    assert out.logits.shape[1] == batch["input_ids"].shape[1] - (n - 8)
    assert len(pruned.clusters) == len(records) and all(1 <= c <= n for c in pruned.clusters)
