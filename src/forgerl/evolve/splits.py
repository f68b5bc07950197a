"""The two held-out splits of an evolve run, and the guardrail between them.

Decisions are made on the *validation* split; the *evaluation* split is what the result is reported
on, and only after the search is over. If the search chose on the numbers it reports, the reported
gain would be the maximum of many noisy measurements: an overestimate. Both splits are drawn from
held-out seeds (never training's): evaluation is the trainer's own held-out range (HELD_OUT_SEED_BASE +
i, what a run's eval/reward and `forgerl eval` measure), validation a range far above it. The task ids
of both are checked to be disjoint before anything runs (a small fixed suite could map two seeds to
one item).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from forgerl.envs.suites import HELD_OUT_SEED_BASE
from forgerl.errors import ConfigError, ForgerlError

SplitName = Literal["validation", "evaluation"]
VALIDATION: SplitName = "validation"
EVALUATION: SplitName = "evaluation"
VALIDATION_SEED_BASE = HELD_OUT_SEED_BASE + 1_000_000_000
"""Validation task seeds start here: held out from training, and above every seed the trainer's
evaluation (HELD_OUT_SEED_BASE + i) or `forgerl eval --seed S` (HELD_OUT_SEED_BASE + S * 100003 + i) uses."""


class GuardrailError(ForgerlError):
    """The evaluation split was about to inform a decision (a bug in a proposer or a runner)."""


def task_seeds(split: SplitName, n: int) -> list[int]:
    """The first `n` task seeds of a split (nested: the first 8 of 32 are the 8)."""
    base = VALIDATION_SEED_BASE if split == VALIDATION else HELD_OUT_SEED_BASE
    return [base + i for i in range(n)]


def check_disjoint(env: str, validation_n: int, evaluation_n: int, difficulty: list[int]) -> None:
    """ConfigError when a validation task is also an evaluation task (same task id)."""
    from forgerl.envs.base import sample_task  # heavy: the family registry, only when a search starts

    def ids(split: SplitName, n: int) -> set[str]:
        return {sample_task(env, s, difficulty=difficulty[i % len(difficulty)]).id
                for i, s in enumerate(task_seeds(split, n))}

    shared = ids(VALIDATION, validation_n) & ids(EVALUATION, evaluation_n)
    if shared:
        raise ConfigError(f"{env}: {len(shared)} validation task(s) are also evaluation tasks (e.g. {sorted(shared)[0]}); "
                          "the family's held-out suite is too small for both splits at these sizes: lower "
                          "objective.validation_tasks or evaluation_tasks")


@dataclass
class Measurement:
    """A candidate's measured objective on one split: successes of n scored episodes and the mean reward."""

    split: SplitName
    n: int
    successes: int
    mean_reward: float
    ci_low: float = 0.0
    ci_high: float = 1.0
    failed: int = 0
    """Episodes lost to infrastructure failures (not in n)."""
    seeds: dict[str, Any] = field(default_factory=dict)
    """Task seeds, sampling seed, perturbation variant, run seed: what a rerun needs."""

    @property
    def success_rate(self) -> float:
        return self.successes / self.n if self.n else 0.0

    def value(self, metric: str) -> float:
        if metric == "success_rate":
            return self.success_rate
        if metric == "mean_reward":
            return self.mean_reward
        raise ConfigError(f"objective metric {metric!r} is unknown; choose success_rate or mean_reward")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "success_rate": self.success_rate}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        return cls(**{k: v for k, v in data.items() if k != "success_rate"})


def for_decisions(*measurements: Measurement) -> None:
    """GuardrailError unless every measurement is on the validation split."""
    for m in measurements:
        if m.split != VALIDATION:
            raise GuardrailError(f"a measurement on the {m.split} split reached a decision: decisions use the "
                                 "validation split only (the evaluation split is reported after the search)")
