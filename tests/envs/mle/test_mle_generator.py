"""mle task generation: deterministic per seed, hidden labels only in `task.answer`, and every
difficulty's promises (degraded features at 2, imbalance / skew at 3) actually in the files."""

from __future__ import annotations

import csv
import io
import random

import pytest

from forgerl.envs.base import family_info, sample_task
from forgerl.envs.mle import generator, reference
from forgerl.envs.mle.generator import generate_task

from .conftest import SEEDS


def _table(text: str) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


def test_the_same_seed_gives_a_byte_identical_task(mle_tasks):
    first = mle_tasks[2].model_dump_json()
    generator._generate.cache_clear()  # draw and measure again
    assert generate_task(SEEDS[2], 2).model_dump_json() == first
    assert mle_tasks[3].model_dump_json() != first


@pytest.mark.slow
def test_a_fresh_reference_worker_measures_the_same_task(mle_tasks):
    first = mle_tasks[3].model_dump_json()
    generator._generate.cache_clear()
    reference._worker.stop()  # a new worker process: nothing carried over from earlier runs
    assert generate_task(SEEDS[3], 3).model_dump_json() == first


def test_the_hidden_labels_are_nowhere_in_the_workspace_or_the_prompt(mle_tasks):
    for task in mle_tasks.values():
        header, test_rows = _table(task.files["test.csv"])
        train_header, train_rows = _table(task.files["train.csv"])
        assert "target" not in header and train_header == [*header, "target"]
        assert all(len(row) == len(header) for row in test_rows)
        test_ids = [row[0] for row in test_rows]
        assert test_ids == list(task.answer) and len(set(test_ids)) == len(test_ids)
        assert not set(test_ids) & {row[0] for row in train_rows}
        assert set(task.files) == {"train.csv", "test.csv", "README.md"}
        for text in [task.prompt, task.files["README.md"], task.files["test.csv"]]:
            assert not any(f"{key},{value}" in text for key, value in task.answer.items())


def test_ids_say_nothing_about_the_label(mle_tasks):
    """Some source sets are sorted by class: ids are drawn at random, so sorting by id does not
    group a class together (the first rows of test.csv are not all one class)."""
    task = mle_tasks[1]  # iris, stored class by class
    labels = [task.answer[key] for key in sorted(task.answer, key=int)]
    runs = sum(a != b for a, b in zip(labels, labels[1:], strict=False))
    assert runs > len(set(labels)) * 3


def test_difficulty_two_and_three_degrade_the_features(mle_tasks):
    header, rows = _table(mle_tasks[1].files["train.csv"])
    assert all(cell != "" for row in rows for cell in row)
    for difficulty in (2, 3):
        header, rows = _table(mle_tasks[difficulty].files["train.csv"])
        cells = [cell for row in rows for cell in row[1:-1]]
        assert "" in cells, "missing values"
        assert any(cell in generator.WORDS for cell in cells), "text categories"
        assert "missing values" in mle_tasks[difficulty].prompt


def test_difficulty_three_skews_the_target_and_scores_mae(mle_tasks):
    task = mle_tasks[3]
    assert task.data["kind"] == "regression" and task.verifier["metric"] == "mae"
    assert "--log-target" in task.data["script_args"]
    values = sorted(task.answer.values())
    assert values[0] > 0 and values[-1] / values[len(values) // 2] > 3  # a long right tail


def test_difficulty_three_classification_is_imbalanced_and_scored_by_macro_f1():
    for seed in range(6):  # drafts only: the class counts are settled before the reference runs
        draft = generator._draft(random.Random(f"mle:3:{seed}:0"), 3)
        if draft.source.kind != "classification":
            continue
        counts = sorted(draft.target.count(label) for label in set(draft.target))
        assert draft.metric == "macro_f1" and counts[0] * 2 < counts[-1] and "--balanced" in draft.script_args


def test_the_stored_figures_make_a_fair_scale(mle_tasks):
    for task in mle_tasks.values():
        spec = task.verifier
        better = spec["reference"] > spec["baseline"] if spec["metric"] in ("accuracy", "macro_f1") else spec["reference"] < spec["baseline"]
        assert better
        assert 0 < task.data["weak_score"] < 1 and task.data["weak_model"] in generator.WEAK_MODELS


def test_the_family_is_registered_and_refuses_unknown_difficulties():
    family = family_info("mle")
    assert family.difficulties == (1, 2, 3) and family.validation_cost and family.noop and family.variants
    with pytest.raises(ValueError, match="difficulty"):
        generate_task(0, 4)
    assert sample_task("mle", SEEDS[2]).difficulty == 2  # difficulty cycles with the seed
