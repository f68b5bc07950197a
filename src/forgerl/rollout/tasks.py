"""Which tasks a run draws: the task and sampling seeds of (run seed, step, group), so a resumed
run redoes a step with the same tasks, and held-out evaluation uses a seed range training never
draws from (envs/suites.py's HELD_OUT_SEED_BASE, which fixed-size suites split on too)."""

from __future__ import annotations

from forgerl.envs.base import Environment, Task, make_env, sample_task
from forgerl.envs.suites import HELD_OUT_SEED_BASE


def training_seed(run_seed: int, step: int, group: int) -> int:
    return (run_seed * 1_000_003 + step * 1_009 + group) % HELD_OUT_SEED_BASE


def make_task(family: str, seed: int, difficulty: int | None) -> tuple[Environment, Task]:
    """A fresh environment and its task; families with a difficulty dial get the level asked for."""
    return make_env(family, seed), sample_task(family, seed, difficulty=difficulty)


__all__ = ["HELD_OUT_SEED_BASE", "make_task", "training_seed"]
