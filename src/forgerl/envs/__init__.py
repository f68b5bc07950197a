"""Environments: the protocol (base.py), rewards (rewards.py), noise (noise.py), task sets
(tasks.py), fixed-size suites (suites.py) and the task families (arithmetic.py, tool_reasoning.py,
...), registered by name. Your own family: `register_env(Family(...))` in a plug-in module
(forgerl/plugins.py, docs/environments.md)."""

from forgerl.envs.base import (
    Environment,
    Family,
    RewardResult,
    RewardWeights,
    Task,
    Verdict,
    list_families,
    make_env,
    register_env,
    register_family,
    run_gold,
    sample_task,
    submit_nothing,
)
from forgerl.envs.noise import NoiseConfig, NoisyEnvironment
from forgerl.envs.suites import FixedSuite, split_items
from forgerl.envs.tasks import generate_tasks, load_tasks, save_tasks

__all__ = [
    "Environment", "Family", "FixedSuite", "NoiseConfig", "NoisyEnvironment", "RewardResult", "RewardWeights", "Task",
    "Verdict", "generate_tasks", "list_families", "load_tasks", "make_env", "register_env", "register_family",
    "run_gold", "sample_task", "save_tasks", "split_items", "submit_nothing",
]
