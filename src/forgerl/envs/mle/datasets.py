"""The datasets mle tasks are cut from: scikit-learn's bundled sets, read from its install (no
download). Imported lazily: scikit-learn is the optional `mle` extra.

Every copy of these datasets a sandbox could read (scikit-learn's data files, the copies in
scipy's and scikit-learn's test data) is masked in the agent's sandbox (`env.hidden_paths`):
with the source rows in reach, an agent could look the hidden test labels up instead of
learning them. `load_linnerud` is not used: its 20 rows leave no test set worth scoring.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from forgerl.errors import ConfigError

# Where the sources (and copies of them) live inside installed packages: masked in the sandbox.
DATA_DIRS = (
    "sklearn/datasets/data", "sklearn/datasets/descr", "sklearn/datasets/tests/data",
    "scipy/spatial/tests/data", "scipy/io/arff/tests/data",
)


@dataclass(frozen=True)
class Dataset:
    """Rows of numeric features and a target, as the task generator needs them."""

    name: str
    kind: str
    """"classification" or "regression"."""
    features: list[list[float]]
    target: list[str] | list[float]
    """Class names (classification) or values (regression)."""
    description: str
    """What one row is and what is predicted, in a sentence (no dataset name)."""


def _sklearn_datasets():  # noqa: ANN202 (the sklearn.datasets module)
    try:
        import sklearn.datasets
    except ImportError:
        raise ConfigError("the mle family needs scikit-learn: pip install 'forgerl[mle]'") from None
    return sklearn.datasets


def _classification(name: str, loader: str, description: str, names: list[str] | None = None) -> Dataset:
    bunch = getattr(_sklearn_datasets(), loader)()
    classes = names or [str(c) for c in bunch.target_names]
    return Dataset(name=name, kind="classification", features=bunch.data.tolist(),
                   target=[classes[int(t)] for t in bunch.target], description=description)


@functools.cache
def load(name: str) -> Dataset:
    """The dataset `name` (one of SOURCES), loaded once per process."""
    if name == "iris":
        return _classification(name, "load_iris", "Each row is one flower's measurements; predict its species.")
    if name == "wine":
        return _classification(name, "load_wine", "Each row is a chemical analysis of one wine; predict its cultivar.")
    if name == "breast_cancer":
        return _classification(name, "load_breast_cancer",
                               "Each row describes cell nuclei in one tissue sample; predict the diagnosis.")
    if name == "digits":
        return _classification(name, "load_digits", "Each row is a small grey-scale image of a handwritten digit "
                               "(one column per pixel, in a shuffled order); predict the digit.",
                               names=[str(d) for d in range(10)])
    if name == "diabetes":
        bunch = _sklearn_datasets().load_diabetes(scaled=False)
        return Dataset(name=name, kind="regression", features=bunch.data.tolist(), target=bunch.target.tolist(),
                       description="Each row is one patient's baseline measurements; predict a measure of "
                                   "disease progression one year later.")
    if name == "wine_alcohol":
        bunch = _sklearn_datasets().load_wine()
        column = list(bunch.feature_names).index("alcohol")
        rows = bunch.data.tolist()
        return Dataset(name=name, kind="regression", features=[r[:column] + r[column + 1:] for r in rows],
                       target=[r[column] for r in rows],
                       description="Each row is a chemical analysis of one wine; predict its alcohol content.")
    raise ConfigError(f"unknown mle dataset {name!r}; known: {', '.join(SOURCES)}")


SOURCES = ("iris", "wine", "breast_cancer", "digits", "diabetes", "wine_alcohol")
