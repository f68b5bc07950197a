"""How an mle submission is scored: the predictions file parsed strictly, a metric on the hidden
labels, and the reward normalised between a trivial predictor and the reference solution.

Artifact-aligned: the only input is the bytes of `predictions.csv` (read by the environment with
no symlink followed and a size cap); whatever the agent printed or claimed is never looked at. A
file that is not exactly one well-formed prediction per test id is worth 0, with the reason in the
evidence, because a lenient parser is a verifier the policy can learn to game (duplicate ids that
average out, NaN that compares false, a missing row that shrinks the denominator).

The metrics are written out here in plain Python, not taken from scikit-learn, so scoring needs no
optional dependency and the exact same function scores the reference at generation time and the
agent at submit time (tests/envs/mle check them against sklearn.metrics).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence

HEADER = ("id", "prediction")
METRICS = ("accuracy", "macro_f1", "rmse", "mae")
HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "rmse": False, "mae": False}
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


class PredictionError(ValueError):
    """The predictions file is malformed; the message says what was wrong (shown in the evidence)."""


def max_prediction_bytes(n_rows: int) -> int:
    """The largest predictions file accepted: generous per row (an id, a full-precision float),
    so an honest file never comes close and a flood is refused before it is read."""
    return 4096 + 96 * n_rows


def parse_predictions(data: bytes, ids: Sequence[str], *, labels: Sequence[str] | None) -> list[str] | list[float]:
    """The predictions in the order of `ids`: class labels (from `labels`) for classification,
    finite floats for regression (`labels` None). Raises PredictionError saying what is wrong."""
    if len(data) > max_prediction_bytes(len(ids)):
        raise PredictionError(f"the file has {len(data)} bytes, over the {max_prediction_bytes(len(ids))} allowed "
                              f"for {len(ids)} rows")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PredictionError(f"the file is not UTF-8 text: {exc}") from None
    if "\x00" in text:
        raise PredictionError("the file contains NUL bytes")
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as exc:
        raise PredictionError(f"the file is not valid CSV: {exc}") from None
    if not rows:
        raise PredictionError("the file is empty: write a header 'id,prediction' and one row per test id")
    header = tuple(cell.strip() for cell in rows[0])
    if header != HEADER:
        raise PredictionError(f"the header must be exactly 'id,prediction', got {','.join(rows[0])[:200]!r}")
    wanted, found = set(ids), {}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise PredictionError(f"line {number} has {len(row)} fields, expected 2 (id,prediction)")
        key = row[0].strip()
        if key not in wanted:
            hint = " (write the ids exactly as test.csv does, as integers)" if _float_of_an_id(key, wanted) else ""
            raise PredictionError(f"line {number}: id {key[:40]!r} is not an id of test.csv{hint}")
        if key in found:
            raise PredictionError(f"line {number}: id {key!r} appears twice")
        found[key] = _label(row[1], labels, number) if labels is not None else _number(row[1], number)
    missing = [key for key in ids if key not in found]
    if missing:
        raise PredictionError(f"{len(missing)} test id(s) have no prediction, e.g. {', '.join(missing[:5])}")
    return [found[key] for key in ids]


def _float_of_an_id(key: str, wanted: set[str]) -> bool:
    """"123456.0" or "1.23456e+05" for the id "123456": numpy's default number format."""
    try:
        number = float(key)
    except ValueError:
        return False
    return math.isfinite(number) and number.is_integer() and str(int(number)) in wanted


def _label(cell: str, labels: Sequence[str], line: int) -> str:
    value = cell.strip()
    if value in labels:
        return value
    if _NUMBER.fullmatch(value) and math.isfinite(float(value)) and float(value).is_integer():
        canonical = str(int(float(value)))  # "3.0" for the integer label "3"
        if canonical in labels:
            return canonical
    shown = ", ".join(labels[:12]) + (" ..." if len(labels) > 12 else "")
    raise PredictionError(f"line {line}: prediction {value[:40]!r} is not one of the labels ({shown})")


def _number(cell: str, line: int) -> float:
    value = cell.strip()
    if not _NUMBER.fullmatch(value):
        raise PredictionError(f"line {line}: prediction {value[:40]!r} is not a decimal number")
    number = float(value)
    if not math.isfinite(number):
        raise PredictionError(f"line {line}: prediction {value[:40]!r} is not finite")
    return number


def metric_value(metric: str, truth: Sequence[str] | Sequence[float], predicted: Sequence[str] | Sequence[float],
                 labels: Sequence[str] = ()) -> float:
    """`metric` of `predicted` against `truth` (equal lengths). macro_f1 averages the per-class
    F1 over `labels` (every class of the task; a class never predicted nor present counts 0)."""
    if len(truth) != len(predicted) or not truth:
        raise ValueError(f"need equally many truths and predictions (> 0), got {len(truth)} and {len(predicted)}")
    n = len(truth)
    if metric == "accuracy":
        return sum(t == p for t, p in zip(truth, predicted, strict=True)) / n
    if metric == "macro_f1":
        scores = []
        for label in labels:
            tp = sum(t == label and p == label for t, p in zip(truth, predicted, strict=True))
            fp = sum(t != label and p == label for t, p in zip(truth, predicted, strict=True))
            fn = sum(t == label and p != label for t, p in zip(truth, predicted, strict=True))
            scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
        return sum(scores) / len(scores)
    errors = [float(t) - float(p) for t, p in zip(truth, predicted, strict=True)]  # type: ignore[arg-type]
    if metric == "rmse":
        return math.sqrt(sum(e * e for e in errors) / n)
    if metric == "mae":
        return sum(abs(e) for e in errors) / n
    raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")


def normalized(metric: str, value: float, baseline: float, reference: float) -> float:
    """clip((value - baseline) / (reference - baseline), 0, 1): 0 at the trivial predictor, exactly
    1 at the reference's metric (x / x == 1 in IEEE arithmetic), for either direction of metric."""
    span = reference - baseline
    if span == 0 or (span > 0) != HIGHER_IS_BETTER[metric]:
        raise ValueError(f"the reference ({reference:g}) does not beat the baseline ({baseline:g}) on {metric}")
    return min(1.0, max(0.0, (value - baseline) / span))

