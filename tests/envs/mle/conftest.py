"""Shared mle fixtures: one generated task per difficulty (generation runs the reference solution,
a couple of seconds each, so the tasks are made once per session)."""

from __future__ import annotations

import pytest

from forgerl.envs.base import Task

SEEDS = {1: 1, 2: 4, 3: 4}
"""(difficulty: seed) covering iris (accuracy), wine with degraded features (accuracy), and the
skewed wine-alcohol regression (MAE, log target)."""


@pytest.fixture(scope="session")
def mle_tasks() -> dict[int, Task]:
    from forgerl.envs.mle import generate_task

    return {difficulty: generate_task(seed, difficulty) for difficulty, seed in SEEDS.items()}
