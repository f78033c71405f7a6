from pathlib import Path

import pytest
import torch

from kdlib.run import RunContext
from kdlib.evaluate.runner import GEOCHAT_7B_FILES, MODELS, REAL_GEOCHAT, write_result
from kdlib.chapters.tables import TABLES, provenance_table, rebuilt_tables, study_results
from kdlib.evaluate.tasks import TASK_NAMES
from kdlib.profiles import get_profile

SCORES = {"OA": 50.0, "AA": 40.0, "presence": 60.0, "comparison": 70.0, "rural_urban": 80.0, "count": 10.0,
          "area": 5.0, "mOA": 65.0, "mOA_mean_of_types": 70.0, "acc@0.5": 20.0, "acc@0.25": 30.0,
          "ROUGE-1": 11.0, "ROUGE-L": 12.0, "METEOR": 13.0}


@pytest.fixture
def ctx(tmp_path) -> RunContext:
    return RunContext(get_profile("tiny"), Path(tmp_path), tmp_path / "run", 0, torch.device("cpu"), False)


def test_tables_put_ours_beside_the_papers(ctx):
    for i, model in enumerate(MODELS):
        for task in TASK_NAMES:
            write_result(ctx, model, task, {k: v + i for k, v in SCORES.items()})
    for task in GEOCHAT_7B_FILES:
        write_result(ctx, REAL_GEOCHAT, task, SCORES)
    results = study_results(ctx)
    tables = rebuilt_tables(results, {})
    assert set(tables) == set(TABLES)
    scene = tables["Tables 3-4: scene classification (OA, AA)"]
    assert scene.loc["student, distilled", "UCMerced OA"] == SCORES["OA"] + MODELS.index("student_kd")
    assert scene.loc["student, distilled", "UCMerced OA (paper)"] == 91.24  # the paper's Table 3 row
    assert scene.loc["teacher, SFT", "AID AA (paper)"] == 56.59  # the paper's Table 4 row
    prov = provenance_table(results)
    assert len(prov) == len(MODELS) * len(TASK_NAMES) + len(GEOCHAT_7B_FILES)
    assert set(prov["profile"]) == {"tiny"}


def test_a_missing_result_names_the_chapter_to_run(ctx):
    with pytest.raises(FileNotFoundError, match="scene_classification"):
        study_results(ctx)


def test_a_balanced_scene_set_is_one_column_in_tables_3_4(ctx):
    def scores(task: str) -> dict:
        return {**SCORES, "AA": SCORES["OA"] if task == "scene_aid" else SCORES["AA"]}

    for model in MODELS:
        for task in TASK_NAMES:
            write_result(ctx, model, task, scores(task))
    for task in GEOCHAT_7B_FILES:
        write_result(ctx, REAL_GEOCHAT, task, scores(task))
    results = study_results(ctx)
    scene = rebuilt_tables(results, {}, ["scene_aid"])["Tables 3-4: scene classification (OA, AA)"]
    assert list(scene.columns).count("AID OA = AA") == 1 and "AID AA" not in scene and "AID AA (paper)" in scene
    assert "UCMerced OA" in scene and "UCMerced AA" in scene
    with pytest.raises(ValueError, match="scene_ucmerced: OA and AA differ"):
        rebuilt_tables(results, {}, ["scene_ucmerced"])
