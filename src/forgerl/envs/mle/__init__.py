"""The `mle` task family: ML-engineering tasks for agents, offline (issue 25).

Importing this package registers the family. Modules: `datasets` (scikit-learn's bundled sets,
loaded lazily), `generator` (seeded tasks with a difficulty dial, the reference measured at
generation), `solution_script` (the reference solution, a standalone script), `reference` (runs
it at generation), `scoring` (strict parsing of predictions.csv, metrics, normalisation), `env`
(the Environment: sandbox, tools, verifier).
"""

from forgerl.envs.mle.env import MLE_FAMILY, TOOLS, MleEnv, hidden_paths, score_workspace
from forgerl.envs.mle.generator import DIFFICULTIES, FAMILY, generate_task, sample_task
from forgerl.envs.mle.scoring import PredictionError, metric_value, normalized, parse_predictions

__all__ = [
    "DIFFICULTIES",
    "FAMILY",
    "MLE_FAMILY",
    "TOOLS",
    "MleEnv",
    "PredictionError",
    "generate_task",
    "hidden_paths",
    "metric_value",
    "normalized",
    "parse_predictions",
    "sample_task",
    "score_workspace",
]
