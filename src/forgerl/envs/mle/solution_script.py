"""Reference solution for an mle task: train on train.csv, predict test.csv, write predictions.csv.

This file is shipped verbatim into the sandbox by the gold path (`python3 solution.py ...`) and run
by the task generator to measure the reference metric, so it must stay a standalone script: the
standard library, numpy and scikit-learn only, no forgerl imports. Deterministic: fixed seeds,
single-threaded (the sandbox and the generator both set the BLAS/OpenMP thread counts to 1).

Preprocessing: numeric columns get median imputation and standard scaling; columns holding text
are one-hot encoded (an empty cell is its own category). Models: `reference` is a logistic
regression (classification; `--balanced` reweights classes) or a ridge regression (regression;
`--log-target` fits log(y) and predicts exp); `tree1`..`tree3` are decision trees of that depth,
the deliberately weak models the family's broken variant plays.
"""

from __future__ import annotations

import argparse
import csv
import math

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

MODELS = ("reference", "tree1", "tree2", "tree3")


def read_table(path: str) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def feature_columns(header: list[str], rows: list[list[str]], target: str) -> tuple[list[int], list[int]]:
    """Indices of the numeric and of the text feature columns (id and target excluded)."""
    numeric, text = [], []
    for j, name in enumerate(header):
        if name in ("id", target):
            continue
        values = [row[j] for row in rows if row[j] != ""]
        (numeric if all(is_number(v) for v in values) else text).append(j)
    return numeric, text


class Features:
    """Fitted preprocessing: imputation + scaling of numbers, one-hot encoding of text."""

    def __init__(self, numeric: list[int], text: list[int]) -> None:
        self.numeric, self.text = numeric, text
        self.imputer = SimpleImputer(strategy="median")
        self.scaler = StandardScaler()
        self.encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)

    def _numbers(self, rows: list[list[str]]) -> np.ndarray:
        return np.array([[float(row[j]) if row[j] != "" else np.nan for j in self.numeric] for row in rows])

    def _texts(self, rows: list[list[str]]) -> np.ndarray:
        return np.array([[row[j] for j in self.text] for row in rows], dtype=object)

    def fit_transform(self, rows: list[list[str]]) -> np.ndarray:
        parts = [self.scaler.fit_transform(self.imputer.fit_transform(self._numbers(rows)))]
        if self.text:
            parts.append(self.encoder.fit_transform(self._texts(rows)))
        return np.hstack(parts)

    def transform(self, rows: list[list[str]]) -> np.ndarray:
        parts = [self.scaler.transform(self.imputer.transform(self._numbers(rows)))]
        if self.text:
            parts.append(self.encoder.transform(self._texts(rows)))
        return np.hstack(parts)


def make_model(kind: str, model: str, balanced: bool):  # noqa: ANN201 (a scikit-learn estimator)
    if model == "reference":
        if kind == "classification":
            return LogisticRegression(C=1.0, max_iter=5000, class_weight="balanced" if balanced else None)
        return Ridge(alpha=1.0)
    depth = int(model.removeprefix("tree"))
    if kind == "classification":
        return DecisionTreeClassifier(max_depth=depth, random_state=0)
    return DecisionTreeRegressor(max_depth=depth, random_state=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("classification", "regression"), required=True)
    parser.add_argument("--model", choices=MODELS, default="reference")
    parser.add_argument("--balanced", action="store_true", help="weight classes by inverse frequency")
    parser.add_argument("--log-target", action="store_true", help="fit log(target), predict exp")
    parser.add_argument("--target", default="target")
    parser.add_argument("--out", default="predictions.csv")
    args = parser.parse_args(argv)

    header, train = read_table("train.csv")
    test_header, test = read_table("test.csv")
    numeric, text = feature_columns(header, train, args.target)
    position = {name: j for j, name in enumerate(test_header)}
    test = [[row[position[name]] if name in position else "" for name in header] for row in test]
    features = Features(numeric, text)
    x_train, x_test = features.fit_transform(train), features.transform(test)
    y_column = header.index(args.target)

    model = make_model(args.kind, args.model, args.balanced)
    if args.kind == "classification":
        model.fit(x_train, np.array([row[y_column] for row in train]))
        predictions = [str(p) for p in model.predict(x_test)]
    else:
        y = np.array([float(row[y_column]) for row in train])
        log = args.log_target and args.model == "reference"
        model.fit(x_train, np.log(y) if log else y)
        raw = model.predict(x_test)
        predictions = [repr(float(v)) for v in (np.exp(raw) if log else raw)]

    ids = [row[header.index("id")] for row in test]
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "prediction"])
        writer.writerows(zip(ids, predictions, strict=True))
    print(f"wrote {len(ids)} predictions to {args.out} (model: {args.model})")


if __name__ == "__main__":
    main()
