"""The `cowork` task family: office work (mail, calendar, notes, a budget sheet) judged on artifacts.

Importing this package registers the family. Modules: `formula` (the sheet and its formula
evaluator), `workplace` (the state and its operations), `generator` (seeded tasks with a difficulty
dial), `verifier` (artifact checks), `env` (the Environment and its tools).
"""

from forgerl.envs.cowork.env import TOOLS, CoworkEnv
from forgerl.envs.cowork.generator import DIFFICULTIES, FAMILY, generate_task, sample_task
from forgerl.envs.cowork.verifier import VerifierSpec, verify
from forgerl.envs.cowork.workplace import Workplace, WorkplaceState

__all__ = [
    "DIFFICULTIES",
    "FAMILY",
    "TOOLS",
    "CoworkEnv",
    "VerifierSpec",
    "Workplace",
    "WorkplaceState",
    "generate_task",
    "sample_task",
    "verify",
]
