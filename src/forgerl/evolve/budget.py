"""The search's budget: runs, training steps and wall time, checked before every run.

A run that has started finishes (a half-trained candidate measures nothing), so the wall-time limit
holds at run boundaries: the search may end up to one run's length past it, and says so in its stop
reason. Every check that stops the search returns a sentence naming the limit that was reached.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_runs: int = Field(20, ge=1)
    """Experiments (the baseline's measurement included)."""
    steps_per_run: int = Field(2, ge=0)
    """Training steps of a full-fidelity run; 0 = no training: the base policy is evaluated as is
    (a scaffold-only search)."""
    max_total_steps: int | None = Field(None, ge=0)
    """Training steps over all runs (None: max_runs x steps_per_run)."""
    wall_s: float = Field(3600.0, gt=0)
    """Seconds; no run starts after this."""


class BudgetClock:
    """Counts what the search has spent; `stop_reason(steps)` says why the next run may not start."""

    def __init__(self, budget: Budget, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget, self._clock = budget, clock
        self.started = clock()
        self.runs = 0
        self.steps = 0

    def elapsed(self) -> float:
        return self._clock() - self.started

    def stop_reason(self, steps: int = 0) -> str | None:
        b = self.budget
        if self.runs >= b.max_runs:
            return f"run budget reached: {self.runs} of max_runs {b.max_runs} runs done"
        if b.max_total_steps is not None and self.steps + steps > b.max_total_steps:
            return (f"step budget reached: {self.steps} steps done, the next run needs {steps} more "
                    f"(max_total_steps {b.max_total_steps})")
        if self.elapsed() >= b.wall_s:
            return f"wall-time budget reached: {self.elapsed():.0f} s elapsed of wall_s {b.wall_s:g} (checked before each run)"
        return None

    def spend(self, steps: int) -> None:
        self.runs += 1
        self.steps += steps
