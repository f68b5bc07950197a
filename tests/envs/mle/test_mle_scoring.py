"""The mle verifier's parser and metrics, attacked directly (no sandbox): every malformed file is
worth 0 with a reason, the metrics agree with scikit-learn, and the normalisation puts the
trivial predictor at 0 and the reference at exactly 1."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from sklearn import metrics

from forgerl.envs.base import Task
from forgerl.envs.mle.env import PREDICTIONS, score_workspace
from forgerl.envs.mle.scoring import PredictionError, max_prediction_bytes, metric_value, normalized, parse_predictions

IDS = ["101", "102", "103"]
LABELS = ["a", "b", "c"]


def _task(kind: str = "classification") -> Task:
    if kind == "classification":
        answer = {"101": "a", "102": "b", "103": "c"}
        spec = {"type": "mle", "metric": "accuracy", "baseline": 1 / 3, "reference": 1.0, "labels": LABELS}
    else:
        answer = {"101": 1.0, "102": 2.0, "103": 6.0}
        spec = {"type": "mle", "metric": "rmse", "baseline": 2.160246899469287, "reference": 0.5, "labels": None}
    return Task(id="mle-test", family="mle", prompt="", answer=answer, verifier=spec)


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty"),
    ("id,label\n101,a\n102,b\n103,c\n", "header must be exactly"),
    ("id,prediction,confidence\n101,a,1\n102,b,1\n103,c,1\n", "header must be exactly"),
    ("id,prediction\n101,a,extra\n102,b\n103,c\n", "has 3 fields"),
    ("id,prediction\n101,a\n101,a\n102,b\n103,c\n", "appears twice"),
    ("id,prediction\n101,a\n102,b\n", "have no prediction, e.g. 103"),
    ("id,prediction\n101,a\n102,b\n103,c\n999,a\n", "not an id of test.csv"),
    ("id,prediction\n1.01e+02,a\n102,b\n103,c\n", "not an id of test.csv \\(write the ids exactly"),
    ("id,prediction\n101,a\n102,b\n103,d\n", "not one of the labels"),
    ("id,prediction\n101,a\n102,b\n103,\n", "not one of the labels"),
])
def test_malformed_classification_files_are_refused_with_a_reason(text, reason):
    with pytest.raises(PredictionError, match=reason):
        parse_predictions(text.encode(), IDS, labels=LABELS)


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "1_000", "0x10", "", "1,5", "one"])
def test_regression_values_must_be_finite_decimal_numbers(value):
    text = f'id,prediction\n101,1\n102,2\n103,"{value}"\n'
    with pytest.raises(PredictionError, match="line 4"):
        parse_predictions(text.encode(), IDS, labels=None)


def test_well_formed_files_parse_in_the_order_of_the_ids():
    assert parse_predictions(b"\xef\xbb\xbfid,prediction\r\n103,c\r\n101, a \r\n102,b\r\n", IDS, labels=LABELS) == ["a", "b", "c"]
    assert parse_predictions(b"id,prediction\n102,2.5e0\n101,-1\n103,.5\n", IDS, labels=None) == [-1.0, 2.5, 0.5]
    digits = [str(d) for d in range(10)]
    assert parse_predictions(b"id,prediction\n101,3.0\n102,4\n103,0\n", IDS, labels=digits) == ["3", "4", "0"]


def test_a_huge_file_is_refused_before_it_is_parsed():
    flood = b"id,prediction\n" + b"101,a\n" * 200_000
    with pytest.raises(PredictionError, match="bytes, over the"):
        parse_predictions(flood, IDS, labels=LABELS)
    assert max_prediction_bytes(3) < len(flood)


def test_binary_and_nul_bytes_are_refused():
    with pytest.raises(PredictionError, match="not UTF-8"):
        parse_predictions(b"id,prediction\n101,\xff\n", IDS, labels=LABELS)
    with pytest.raises(PredictionError, match="NUL"):
        parse_predictions(b"id,prediction\n101,a\x00\n", IDS, labels=LABELS)


def test_metrics_agree_with_scikit_learn():
    truth = ["a", "a", "b", "c", "c", "c", "a"]
    pred = ["a", "b", "b", "c", "a", "c", "c"]
    assert metric_value("accuracy", truth, pred) == pytest.approx(metrics.accuracy_score(truth, pred))
    assert metric_value("macro_f1", truth, pred, LABELS) == pytest.approx(metrics.f1_score(truth, pred, average="macro"))
    y, p = [1.0, 2.0, 6.0, -3.0], [1.5, 2.0, 4.0, 0.0]
    assert metric_value("rmse", y, p) == pytest.approx(math.sqrt(metrics.mean_squared_error(y, p)))
    assert metric_value("mae", y, p) == pytest.approx(metrics.mean_absolute_error(y, p))
    # a class of the task that never occurs nor is predicted counts as F1 0 (all labels weigh the same)
    assert metric_value("macro_f1", ["a"], ["a"], ["a", "b"]) == 0.5


def test_normalisation_is_zero_at_the_baseline_and_exactly_one_at_the_reference():
    for metric, baseline, reference in [("accuracy", 0.3371, 0.9551), ("rmse", 71.85, 49.71), ("mae", 2.5, 1.75)]:
        assert normalized(metric, reference, baseline, reference) == 1.0
        assert normalized(metric, baseline, baseline, reference) == 0.0
        worse = baseline - 0.1 if metric == "accuracy" else baseline * 2
        better = min(1.0, reference + 0.01) if metric == "accuracy" else reference / 2
        assert normalized(metric, worse, baseline, reference) == 0.0
        assert normalized(metric, better, baseline, reference) == 1.0
        middle = (baseline + reference) / 2
        assert normalized(metric, middle, baseline, reference) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="does not beat the baseline"):
        normalized("rmse", 1.0, 1.0, 2.0)


def _write(workspace: Path, text: str) -> None:
    (workspace / PREDICTIONS).write_text(text)


def test_the_verdict_reports_metric_baseline_reference_and_normalized(tmp_path):
    _write(tmp_path, "id,prediction\n101,a\n102,b\n103,a\n")
    verdict = score_workspace(_task(), tmp_path)
    assert verdict.outcome == pytest.approx(0.5)
    assert verdict.parts["metric"] == pytest.approx(2 / 3) and verdict.parts["valid"] == 1.0
    assert verdict.parts["baseline"] == pytest.approx(1 / 3) and verdict.parts["reference"] == 1.0
    _write(tmp_path, "id,prediction\n101,1\n102,2\n103,6\n")
    assert score_workspace(_task("regression"), tmp_path).outcome == 1.0


def test_a_malformed_or_missing_file_scores_zero_with_the_reason_in_the_evidence(tmp_path):
    verdict = score_workspace(_task(), tmp_path)
    assert verdict.outcome == 0.0 and "no predictions.csv" in verdict.evidence["reason"]
    _write(tmp_path, "id,prediction\n101,a\n101,a\n102,b\n103,c\n")
    verdict = score_workspace(_task(), tmp_path)
    assert verdict.outcome == 0.0 and verdict.parts["valid"] == 0.0 and "appears twice" in verdict.evidence["reason"]


def test_a_symlinked_predictions_file_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere.csv"
    target.write_text("id,prediction\n101,a\n102,b\n103,c\n")  # a perfect file, but reached through a link
    os.symlink(target, tmp_path / PREDICTIONS)
    verdict = score_workspace(_task(), tmp_path)
    assert verdict.outcome == 0.0 and "symbolic link" in verdict.evidence["reason"]


def test_a_fifo_or_directory_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / PREDICTIONS)  # a plain open() would wait forever for a writer
    assert "not a regular file" in score_workspace(_task(), tmp_path).evidence["reason"]
    os.unlink(tmp_path / PREDICTIONS)
    (tmp_path / PREDICTIONS).mkdir()
    assert score_workspace(_task(), tmp_path).outcome == 0.0


def test_an_oversized_file_is_refused_by_its_size(tmp_path):
    with open(tmp_path / PREDICTIONS, "wb") as f:
        f.truncate(50_000_000)  # sparse: 50 MB of NUL bytes without writing them
    verdict = score_workspace(_task(), tmp_path)
    assert verdict.outcome == 0.0 and "over the" in verdict.evidence["reason"]


def test_a_broken_task_spec_is_a_verifier_error_not_a_zero(tmp_path):
    """Scoring that cannot run (here: a reference that does not beat the baseline) must mark the
    episode failed (VerifierError), never hand the agent a silent 0."""
    import asyncio

    from forgerl.envs.mle import MleEnv
    from forgerl.errors import VerifierError
    from forgerl.types import ToolCall, Trajectory

    task = _task()
    task.verifier["reference"] = task.verifier["baseline"]
    env = MleEnv()
    env.task = task
    env._sandbox = type("FakeSandbox", (), {"workspace": tmp_path, "isolated": True})()
    _write(tmp_path, "id,prediction\n101,a\n102,b\n103,c\n")
    asyncio.run(env.execute(ToolCall(name="submit", arguments={})))
    assert env.done
    with pytest.raises(VerifierError, match="does not beat the baseline"):
        env.verify(Trajectory(task_id=task.id, messages=[]))
