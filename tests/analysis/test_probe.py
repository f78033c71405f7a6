"""The linear probe: separable features are read out, shuffled labels are not, and its features are
the mean of what the model's own projector receives."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from kdlib.analysis.probe import C_GRID, fit_probe, mean_projector_inputs, probe_scores, scene_probe
from kdlib.data.prompts import scene_query
from kdlib.data.records import Record, records_digest
from kdlib.data.study import Study
from kdlib.evaluate.generate import generation_collator
from kdlib.models.build import build_pair
from kdlib.models.features import mllm_forward
from kdlib.models.io import LoadedMLLM, save_mllm
from kdlib.run import RunContext


def _blobs(per_class: int, classes: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Gaussian clusters of unit spread whose centres lie 6 apart on the first ``classes`` axes."""
    x = rng.normal(size=(per_class * classes, dim))
    y = [f"class {k}" for k in range(classes) for _ in range(per_class)]
    x[np.arange(len(y)), [int(label.split()[1]) for label in y]] += 6.0
    return x, y


def test_separable_features_are_read_out_almost_perfectly() -> None:
    rng = np.random.default_rng(0)
    (tx, ty), (vx, vy), (sx, sy) = (_blobs(n, 5, 16, rng) for n in (30, 10, 40))
    fit = fit_probe(tx, ty, vx, vy)
    scores = probe_scores(fit, sx, sy)
    assert scores["OA"] >= 99.0 and scores["n"] == 200 and scores["hits"] == round(scores["OA"] * 2)
    assert fit.C in C_GRID and set(fit.val_accuracy) == set(C_GRID)


def test_shuffled_labels_leave_the_probe_at_chance() -> None:
    rng = np.random.default_rng(1)
    (tx, ty), (vx, vy), (sx, sy) = (_blobs(n, 5, 16, rng) for n in (30, 10, 80))
    shuffled = [list(rng.permutation(labels)) for labels in (ty, vy, sy)]
    scores = probe_scores(fit_probe(tx, shuffled[0], vx, shuffled[1]), sx, shuffled[2])
    assert abs(scores["OA"] - 20.0) < 10.0  # chance 20 % over 400 images: sd 2 points


def test_ties_on_validation_go_to_the_stronger_penalty() -> None:
    rng = np.random.default_rng(2)
    (tx, ty), (vx, vy) = (_blobs(n, 3, 8, rng) for n in (20, 10))
    fit = fit_probe(tx, ty, vx, vy)
    assert fit.val_accuracy[fit.C] == max(fit.val_accuracy.values())
    assert fit.C == min(c for c, v in fit.val_accuracy.items() if v == fit.val_accuracy[fit.C])
    with pytest.raises(ValueError, match="two classes"):
        fit_probe(tx, ["one"] * len(ty), vx, vy)


def _projector_input_mean(mllm: LoadedMLLM, record: Record) -> torch.Tensor:
    """The mean over tokens of what the model's projector receives in a forward on ``record``, ``[D_v]``."""
    seen = []
    hook = mllm.model.model.multi_modal_projector.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    batch = generation_collator(mllm)([record])
    try:
        with torch.no_grad():
            mllm_forward(mllm.model, batch["input_ids"], batch["pixel_values"], batch["attention_mask"])
    finally:
        hook.remove()
    assert len(seen) == 1 and seen[0].shape[0] == 1
    return seen[0][0].mean(0)


def test_features_are_the_mean_of_the_projector_inputs(teacher, records) -> None:
    """A plain tower (``tiny``): the probe's features of one image equal the model's own."""
    features = mean_projector_inputs(teacher, records[:1])
    assert features.shape == (1, teacher.model.config.vision_config.hidden_size)
    torch.testing.assert_close(torch.from_numpy(features[0]).float(), _projector_input_mean(teacher, records[0]))


def test_features_of_a_pooled_tower_come_from_the_cache(pair, profile, records, tmp_path) -> None:
    """A pooled tower (``small``): the same equality, whether the cache computes the features or reads them."""
    pooled = build_pair(profile.override({"vision.pool_grid": 2}), pair.tokenizer, seed=1)
    mllm = LoadedMLLM(pooled.teacher.eval(), pooled.tokenizer, pooled.image_processor)
    computed = mean_projector_inputs(mllm, records[:2], tmp_path)
    assert len(list(tmp_path.rglob("*.pt"))) == 2
    read = mean_projector_inputs(mllm, records[:2], tmp_path)
    np.testing.assert_array_equal(read, computed)
    torch.testing.assert_close(torch.from_numpy(computed[1]).float(), _projector_input_mean(mllm, records[1]))


def _coloured_study(folder, colours: dict[str, tuple[int, int, int]], sizes: dict[str, int]) -> Study:
    """Scene records whose class is the colour of a noisy image; ``sizes`` images per class and split."""
    rng = np.random.default_rng(3)
    query = scene_query(list(colours))
    splits: dict[str, list[Record]] = {name: [] for name in sizes}
    for label, (name, rgb) in enumerate(colours.items()):
        for split, n in sizes.items():
            for i in range(n):
                pixels = np.clip(np.array(rgb) + rng.normal(0, 20, size=(32, 32, 3)), 0, 255).astype(np.uint8)
                path = folder / split / f"{name}{i:02d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(path)
                splits[split].append(Record(id=f"ucmerced/{name}/{split}{i}", task="scene", image=path,
                                            question=query, answer=name,
                                            meta={"dataset": "ucmerced", "label": label, "class_dir": name}))
    return Study(**splits, classes={"ucmerced": tuple(colours)}, profile="tiny")


def test_scene_probe_scores_the_test_records_of_a_run(pair, profile, tmp_path) -> None:
    study = _coloured_study(tmp_path / "images", {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (20, 40, 230)},
                            {"train": 8, "val": 3, "test": 5})
    ctx = RunContext(profile, tmp_path, tmp_path / "out", 0, torch.device("cpu"), False)
    save_mllm(ctx.model_dir("teacher"), pair.teacher, pair.tokenizer, pair.image_processor)
    result = scene_probe(ctx, study, tasks=("scene_ucmerced",))["scene_ucmerced"]
    assert (result["n"], result["n_train"], result["n_val"]) == (15, 24, 9)
    assert result["records"] == records_digest(study.test) and result["OA"] >= 90.0
    saved = json.loads(ctx.chapter_file("probe.json").read_text())
    assert saved["scene_ucmerced"]["OA"] == result["OA"] and saved["provenance"]["tower_of"] == "teacher"


def test_scene_probe_refuses_a_run_scored_on_other_test_records(pair, profile, tmp_path) -> None:
    study = _coloured_study(tmp_path / "images", {"red": (220, 30, 30), "blue": (20, 40, 230)},
                            {"train": 3, "val": 1, "test": 2})
    ctx = RunContext(profile, tmp_path, tmp_path / "out", 0, torch.device("cpu"), False)
    save_mllm(ctx.model_dir("teacher"), pair.teacher, pair.tokenizer, pair.image_processor)
    ctx.result_file("teacher", "scene_ucmerced").parent.mkdir(parents=True)
    ctx.result_file("teacher", "scene_ucmerced").write_text(json.dumps({"provenance": {"records": "0" * 64}}))
    with pytest.raises(ValueError, match="scored on other scene_ucmerced test records"):
        scene_probe(ctx, study, tasks=("scene_ucmerced",))
    ctx.result_file("teacher", "scene_ucmerced").write_text(json.dumps({"provenance": {"records": records_digest(study.test)}}))
    assert scene_probe(ctx, study, tasks=("scene_ucmerced",))["scene_ucmerced"]["n"] == 4
