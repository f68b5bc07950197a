"""Seeded mle tasks: a bundled dataset cut into a labelled train.csv and an unlabelled test.csv.

Per seed: the dataset, the train/test split (stratified for classes), new row ids drawn at random
(they say nothing about the original order, which for some sets is sorted by class), every feature
rescaled by a random factor, the columns shuffled and renamed f01, f02, ...

Difficulty:
  1. clean numeric features; accuracy (classification) or RMSE (regression);
  2. + noise on the features, irrelevant columns (numbers and a text category), missing cells in
     some columns, one informative column turned into text categories (binned);
  3. + classification: a third of the classes made rare, scored by macro-F1 (the majority class
     is no longer a good answer); regression: a skewed target (exp of the original), scored by MAE.

The reference solution (`solution_script.py`) is run once here (reference.py): its metric on the
hidden labels is stored in the task, and so is the trivial predictor's (majority class, or the
train mean / median), so the verifier normalises between them. A weak model (a shallow tree)
that scores strictly between the two is picked as the family's broken variant. The hidden labels
live only in `task.answer`, which never enters the workspace.
"""

from __future__ import annotations

import functools
import math
import random
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from forgerl.envs.base import Task
from forgerl.envs.mle.datasets import SOURCES, Dataset, load
from forgerl.envs.mle.reference import SCRIPT_NAME, run_models
from forgerl.envs.mle.scoring import HIGHER_IS_BETTER, metric_value, normalized, parse_predictions
from forgerl.errors import ConfigError

FAMILY = "mle"
DIFFICULTIES = (1, 2, 3)
TEST_FRACTION = 0.3
WEAK_MODELS = ("tree1", "tree2", "tree3")
MAX_ATTEMPTS = 6
MIN_GAIN = 0.02
"""How far (as a fraction of the scale) the reference must beat the trivial predictor."""
WORDS = ("amber", "basalt", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "juniper", "kelp",
         "lagoon", "marble", "nectar", "onyx", "pepper", "quartz", "russet", "saffron", "tundra")
METRIC_TEXT = {
    "accuracy": "accuracy (fraction of test rows whose class is right; higher is better)",
    "macro_f1": "macro-averaged F1 (the F1 score of each class, averaged with equal weight; higher is better). "
                "The classes are imbalanced: predicting the majority class scores poorly",
    "rmse": "root mean squared error (lower is better)",
    "mae": "mean absolute error (lower is better)",
}


@dataclass
class Draft:
    """A task before the reference has been measured."""

    source: Dataset
    metric: str
    columns: dict[str, list[str]]
    """Feature name -> cells, in file order, for every row (train and test together)."""
    target: list[str]
    """Target cells for every row."""
    ids: list[str]
    test: set[int]
    """Row positions that go to test.csv."""
    script_args: list[str]
    notes: list[str] = field(default_factory=list)
    """What the README says about the data (missing cells, text columns)."""


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _rescaled(rng: random.Random, column: list[float], noisy: bool) -> list[float]:
    scale = 2.0 ** rng.uniform(-2.0, 2.0)
    spread = statistics.pstdev(column) or 1.0
    return [(v + (rng.gauss(0.0, 0.05 * spread) if noisy else 0.0)) * scale for v in column]


def _binned(rng: random.Random, column: list[float]) -> list[str]:
    """A numeric column as 4 text categories (quartile bins), named by random words."""
    cuts = statistics.quantiles(column, n=4)
    words = rng.sample(WORDS, 4)
    return [words[sum(v > c for c in cuts)] for v in column]


def _rows_kept(rng: random.Random, data: Dataset, difficulty: int) -> list[int]:
    """All rows, or (difficulty 3, classification) all but most rows of a third of the classes."""
    rows = list(range(len(data.target)))
    if difficulty < 3 or data.kind != "classification":
        return rows
    classes = sorted(set(data.target))  # type: ignore[arg-type]
    rare = set(rng.sample(classes, max(1, len(classes) // 3)))
    keep = rng.uniform(0.15, 0.3)
    by_class: dict[str, list[int]] = {}
    for i in rows:
        by_class.setdefault(str(data.target[i]), []).append(i)
    kept = []
    for label, members in sorted(by_class.items()):
        if label in rare:
            members = rng.sample(members, min(len(members), max(8, round(keep * len(members)))))
        kept += members
    return sorted(kept)


def _split(rng: random.Random, target: list[str], classification: bool) -> set[int]:
    if not classification:
        rows = list(range(len(target)))
        return set(rng.sample(rows, round(TEST_FRACTION * len(rows))))
    test: set[int] = set()
    for label in sorted(set(target)):
        members = [i for i, t in enumerate(target) if t == label]
        test |= set(rng.sample(members, max(1, round(TEST_FRACTION * len(members)))))
    return test


def _draft(rng: random.Random, difficulty: int) -> Draft:
    data = load(rng.choice(SOURCES))
    classification = data.kind == "classification"
    rows = _rows_kept(rng, data, difficulty)
    raw_columns = [[data.features[i][j] for i in rows] for j in range(len(data.features[0]))]
    metric = ("macro_f1" if difficulty == 3 else "accuracy") if classification else ("mae" if difficulty == 3 else "rmse")
    script_args = ["--kind", data.kind]
    notes: list[str] = []
    if classification:
        target = [str(data.target[i]) for i in rows]
        if difficulty == 3:
            script_args.append("--balanced")
    else:
        values = [float(data.target[i]) for i in rows]  # type: ignore[arg-type]
        if difficulty == 3:  # skewed: exp of the standardised target, shifted
            mean, spread, shift = statistics.fmean(values), statistics.pstdev(values), rng.uniform(1.0, 3.0)
            values = [math.exp(0.9 * (v - mean) / spread + shift) for v in values]
            script_args.append("--log-target")
        target = [_fmt(v) for v in values]

    noisy = difficulty >= 2
    columns: list[list[str]] = [[_fmt(v) for v in _rescaled(rng, col, noisy)] for col in raw_columns]
    if noisy:
        columns = _degrade(rng, columns, raw_columns, notes)
    rng.shuffle(columns)
    width = len(str(len(columns)))
    named = {f"f{k + 1:0{width}d}": col for k, col in enumerate(columns)}
    ids = [str(i) for i in rng.sample(range(100_000, 1_000_000), len(rows))]
    return Draft(source=data, metric=metric, columns=named, target=target, ids=ids,
                 test=_split(rng, target, classification), script_args=script_args, notes=notes)


def _degrade(rng: random.Random, columns: list[list[str]], raw: list[list[float]], notes: list[str]) -> list[list[str]]:
    """Difficulty 2+: one column as text categories, missing cells, irrelevant columns."""
    n = len(columns[0])
    binned = rng.randrange(len(columns))
    columns[binned] = _binned(rng, raw[binned])
    numeric = [j for j in range(len(columns)) if j != binned]
    for j in rng.sample(numeric, max(1, len(numeric) // 3)):
        rate = rng.uniform(0.05, 0.15)
        columns[j] = ["" if rng.random() < rate else cell for cell in columns[j]]
    for _ in range(rng.randint(2, 5)):
        scale = 2.0 ** rng.uniform(-2.0, 4.0)
        columns.append([_fmt(rng.gauss(0.0, 1.0) * scale) for _ in range(n)])
    levels = rng.sample(WORDS, rng.randint(3, 5))
    columns.append([rng.choice(levels) for _ in range(n)])
    notes.append("Some cells are empty (missing values).")
    notes.append("Some columns hold text categories instead of numbers.")
    notes.append("Not every column is related to the target.")
    return columns


def _csv(names: list[str], rows: list[list[str]]) -> str:
    return "\n".join(",".join(row) for row in [names, *rows]) + "\n"


def workspace_files(draft: Draft) -> tuple[dict[str, str], list[str]]:
    """train.csv and test.csv (rows sorted by id), and the test ids in file order."""
    names = list(draft.columns)
    order = sorted(range(len(draft.ids)), key=lambda i: int(draft.ids[i]))
    train = [[draft.ids[i], *(draft.columns[c][i] for c in names), draft.target[i]] for i in order if i not in draft.test]
    test = [[draft.ids[i], *(draft.columns[c][i] for c in names)] for i in order if i in draft.test]
    files = {"train.csv": _csv(["id", *names, "target"], train), "test.csv": _csv(["id", *names], test)}
    return files, [row[0] for row in test]


def _prompt(draft: Draft, n_train: int, n_test: int, labels: list[str] | None) -> str:
    kind = "a classification" if labels is not None else "a regression"
    lines = [
        f"This is {kind} task. {draft.source.description}",
        "",
        f"- `train.csv`: {n_train} rows with the columns `id`, {len(draft.columns)} features "
        f"(`{next(iter(draft.columns))}` ...) and `target`.",
        f"- `test.csv`: {n_test} rows with the same columns except `target`.",
        f"- Metric on the hidden test targets: {METRIC_TEXT[draft.metric]}.",
    ]
    if labels is not None:
        lines.append(f"- The target is one of: {', '.join(labels)}.")
    lines += [f"- {note}" for note in draft.notes]
    lines += [
        "",
        "Write `predictions.csv` in the workspace with the header `id,prediction` and exactly one row per id of "
        "test.csv (predicted class or number). Only that file is scored: your own validation numbers are not. "
        "numpy and scikit-learn are installed; there is no network. Use run_python or run_shell to train, "
        "then call submit.",
    ]
    return "\n".join(lines)


def _baseline(draft: Draft, test_ids: list[str], labels: list[str] | None) -> list[str] | list[float]:
    """The trivial predictor: the majority class of train, or its mean (RMSE) / median (MAE)."""
    train = [draft.target[i] for i in range(len(draft.ids)) if i not in draft.test]
    if labels is not None:
        counts = Counter(train)
        majority = min(counts, key=lambda c: (-counts[c], c))
        return [majority] * len(test_ids)
    values = [float(v) for v in train]
    guess = statistics.median(values) if draft.metric == "mae" else statistics.fmean(values)
    return [guess] * len(test_ids)


class _Rejected(Exception):
    """This draw cannot be scored fairly (the reference hardly beats the trivial predictor)."""


def _measure(draft: Draft) -> dict[str, Any]:
    files, test_ids = workspace_files(draft)
    classification = draft.source.kind == "classification"
    labels = sorted(set(draft.target)) if classification else None
    position = {key: i for i, key in enumerate(draft.ids)}
    truth: list[Any] = [draft.target[position[key]] if classification else float(draft.target[position[key]])
                        for key in test_ids]
    produced = run_models(files, draft.script_args, ["reference", *WEAK_MODELS])
    scores = {m: metric_value(draft.metric, truth, parse_predictions(data, test_ids, labels=labels), labels or ())
              for m, data in produced.items()}
    baseline = metric_value(draft.metric, truth, _baseline(draft, test_ids, labels), labels or ())
    reference = scores["reference"]
    gain = (reference - baseline) if HIGHER_IS_BETTER[draft.metric] else (baseline - reference) / baseline
    if gain < MIN_GAIN:
        raise _Rejected(f"reference {reference:g} vs baseline {baseline:g}")
    weak = {m: normalized(draft.metric, scores[m], baseline, reference) for m in WEAK_MODELS}
    inside = [m for m in WEAK_MODELS if 0.05 <= weak[m] <= 0.95] or sorted(
        (m for m in WEAK_MODELS if 0 < weak[m] < 1), key=lambda m: abs(weak[m] - 0.5))
    if not inside:
        raise _Rejected(f"no weak model scores strictly between the baseline and the reference: {weak}")
    return {"files": files, "test_ids": test_ids, "labels": labels, "truth": truth, "baseline": baseline,
            "reference": reference, "weak_model": inside[0], "weak_score": weak[inside[0]]}


@functools.lru_cache(maxsize=32)
def _generate(seed: int, difficulty: int) -> Task:
    problems = []
    for attempt in range(MAX_ATTEMPTS):
        draft = _draft(random.Random(f"{FAMILY}:{difficulty}:{seed}:{attempt}"), difficulty)
        try:
            measured = _measure(draft)
        except _Rejected as exc:
            problems.append(f"{draft.source.name}: {exc}")
            continue
        n_test = len(measured["test_ids"])
        prompt = _prompt(draft, len(draft.ids) - n_test, n_test, measured["labels"])
        return Task(
            id=f"{FAMILY}-d{difficulty}-{seed}",
            family=FAMILY,
            prompt=prompt,
            difficulty=difficulty,
            files={**measured["files"], "README.md": f"# Task\n\n{prompt}\n"},
            data={"kind": draft.source.kind, "source": draft.source.name, "script": SCRIPT_NAME,
                  "script_args": draft.script_args, "weak_model": measured["weak_model"],
                  "weak_score": measured["weak_score"], "n_train": len(draft.ids) - n_test, "n_test": n_test},
            answer=dict(zip(measured["test_ids"], measured["truth"], strict=True)),
            verifier={"type": "mle", "metric": draft.metric, "baseline": measured["baseline"],
                      "reference": measured["reference"], "labels": measured["labels"]},
        )
    raise ConfigError(f"could not draw a scorable mle task for seed {seed}, difficulty {difficulty}: {problems}")


def generate_task(seed: int, difficulty: int = 1) -> Task:
    """One mle task; the same (seed, difficulty) always gives the same task. Runs the reference
    solution (a second or two), so tasks are cached per process."""
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"mle difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    return _generate(seed, difficulty).model_copy(deep=True)


def sample_task(seed: int) -> Task:
    """The registry's entry point: difficulty cycles with the seed (1, 2, 3, 1, ...)."""
    return generate_task(seed, difficulty=1 + seed % len(DIFFICULTIES))
