"""A fake runner for the search loop: no training, no model; each candidate's success rate per split is a table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from forgerl.evolve.runner import RunResult
from forgerl.evolve.space import Candidate
from forgerl.evolve.splits import Measurement, SplitName
from forgerl.stats import wilson_interval

Rate = Callable[[Candidate, SplitName, int], float]


class FakeRunner:
    """Measures `rate(candidate, split, steps)` as successes out of `tasks`; records every call."""

    def __init__(self, rate: Rate, *, trained: bool = False) -> None:
        self.rate, self.trained = rate, trained
        self.calls: list[tuple[str, SplitName, int, int]] = []

    def run(self, candidate: Candidate, *, steps: int, tasks: int, split: SplitName, run_dir: Path) -> RunResult:
        self.calls.append((candidate.label(), split, steps, tasks))
        wins = round(self.rate(candidate, split, steps) * tasks)
        low, high = wilson_interval(wins, tasks)
        m = Measurement(split=split, n=tasks, successes=wins, mean_reward=wins / tasks, ci_low=low, ci_high=high,
                        seeds={"tasks": tasks})
        run_dir.mkdir(parents=True, exist_ok=True)
        return RunResult(m, run_dir=run_dir if self.trained and steps else None, metrics={"train/loss": 0.1})

    def close(self) -> None:
        pass


def naming_rate(validation: dict[str, float], evaluation: dict[str, float] | None = None) -> Rate:
    """Success by the scaffold's naming style (default 0.25), separately per split."""
    def rate(candidate: Candidate, split: SplitName, steps: int) -> float:
        table = validation if split == "validation" else (evaluation or validation)
        return table.get(candidate.scaffold.naming, 0.25)
    return rate
