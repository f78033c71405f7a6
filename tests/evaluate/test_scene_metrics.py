"""Scene classification OA / AA / confusion matrix (kdlib.evaluate.scene)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from kdlib.data.geochat_bench import SceneAnswer, read_answers
from kdlib.evaluate.paper import paper_value
from kdlib.evaluate.scene import (OTHER, SCENE_SYNONYMS, accuracies, normalize_label, scene_confusion,
                                  scene_labels, scene_metrics)


def answers(pairs: list[tuple[str, str]]) -> list[SceneAnswer]:
    return [SceneAnswer(f"{truth}/{i}.tif", answer, truth) for i, (answer, truth) in enumerate(pairs)]


def test_normalisation_is_geochats() -> None:
    assert normalize_label("Dense Residential.") == "denseresidential"
    assert normalize_label("dense-residential") == "dense-residential"


def test_perfect_confusion_matrix() -> None:
    records = answers([("forest", "forest"), ("Beach.", "beach"), ("beach", "beach")])
    classes, y_true, y_pred = scene_labels(records)
    confusion = scene_confusion(y_true, y_pred, classes)
    assert confusion.to_numpy().tolist() == [[2, 0, 0], [0, 1, 0]]
    assert list(confusion.columns) == ["beach", "forest", OTHER]
    assert scene_metrics(records) == {"OA": 100.0, "AA": 100.0, "per_class": {"beach": 100.0, "forest": 100.0}, "n": 3}


def test_empty_confusion_matrix() -> None:
    confusion = scene_confusion([], [], ["a", "b"])
    assert confusion.shape == (2, 3) and confusion.to_numpy().sum() == 0
    with pytest.raises(ValueError, match="empty confusion matrix"):
        accuracies(confusion)


def test_class_without_samples_is_left_out_of_aa() -> None:
    # "b" is a class (column) but has no ground-truth sample: AA averages a and c only.
    confusion = scene_confusion(["a", "a", "a", "c"], ["a", "b", OTHER, "c"], ["a", "b", "c"])
    scores = accuracies(confusion)
    assert scores["per_class"] == pytest.approx({"a": 100 / 3, "c": 100.0})
    assert scores["AA"] == pytest.approx((100 / 3 + 100) / 2)
    assert scores["OA"] == pytest.approx(50.0)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_oa_aa_against_sklearn() -> None:
    rng = np.random.default_rng(0)
    truth = rng.choice(["x", "y", "z"], size=60, p=[0.6, 0.3, 0.1])
    pred = np.where(rng.random(60) < 0.7, truth, rng.choice(["x", "y", "z", "w"], size=60))
    scores = scene_metrics(answers(list(zip(pred, truth))))
    assert scores["OA"] == pytest.approx(100 * np.mean(truth == pred))
    assert scores["AA"] == pytest.approx(100 * balanced_accuracy_score(truth, pred))


def test_synonyms_only_map_out_of_class_answers() -> None:
    records = answers([("Harbor", "port"), ("parking lot", "parking")])
    assert scene_metrics(records)["OA"] == 0.0
    assert scene_metrics(records, SCENE_SYNONYMS)["OA"] == 100.0
    # Where "harbor" is itself a class (UCMerced), the answer keeps its own meaning.
    records = answers([("Harbor", "port"), ("harbor", "harbor")])
    assert scene_metrics(records, SCENE_SYNONYMS)["OA"] == 50.0


def test_ucmerced_matches_paper_and_geochat_folder_rule(data_root) -> None:
    records = read_answers(data_root / "geochat_bench" / "UCmerced_geochat_7b.jsonl", "classification").records
    scores = scene_metrics(records)
    expected = paper_value(4, "AA", "UCMerced", "GeoChat-7B")
    assert scores["OA"] == pytest.approx(expected, abs=0.005)
    assert scores["AA"] == pytest.approx(expected, abs=0.005)
    # GeoChat's scorer takes the class from the question_id folder: same verdicts.
    folder_hits = [normalize_label(r.answer) == r.question_id.split("/")[0].lower() for r in records]
    assert scores["OA"] == pytest.approx(100 * np.mean(folder_hits))


def test_aid_exact_match(data_root) -> None:
    records = read_answers(data_root / "geochat_bench" / "AID_geochat_7b.jsonl", "classification").records
    # 71.90 % exact match: the figure data/MANIFEST.md section 8 states for this file.
    assert scene_metrics(records)["OA"] == pytest.approx(71.90, abs=0.005)
