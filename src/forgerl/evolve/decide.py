"""The objective and the rule that keeps a candidate: it must beat the incumbent on the validation split.

Two rules. `margin`: the candidate's value beats the incumbent's by more than `margin` (both on the
same validation tasks, so the comparison is paired by task). `interval`: the candidate's 95% Wilson
lower bound is above the incumbent's rate plus `margin` (success_rate only): stricter, it needs a
gain the sample cannot explain by chance at the candidate's n. Ties and losses keep the incumbent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from forgerl.evolve.splits import Measurement, for_decisions


class Objective(BaseModel):
    """What the search optimizes: a held-out metric measured on the validation split."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: Literal["success_rate", "mean_reward"] = "success_rate"
    """success_rate: episodes whose verifier outcome is 1; mean_reward: outcome plus process terms."""
    direction: Literal["max", "min"] = "max"
    validation_tasks: int = Field(32, ge=1)
    """Validation episodes per full measurement (a halving rung may use fewer)."""
    evaluation_tasks: int = Field(64, ge=1)
    """Evaluation-split episodes per reported policy, measured once the search is over."""
    rule: Literal["margin", "interval"] = "margin"
    margin: float = Field(0.0, ge=0)
    tolerance: float = Field(0.0, ge=0)
    """How far a replayed measurement may land from the logged one (0: exactly; greedy evaluation
    of a fixed policy is deterministic, training on another machine may not be)."""

    @model_validator(mode="after")
    def _interval_needs_rates(self) -> Objective:
        if self.rule == "interval" and self.metric != "success_rate":
            raise ValueError("objective.rule 'interval' uses Wilson intervals, which exist for success_rate only")
        return self

    def better(self, a: float, b: float) -> float:
        """How much `a` improves on `b` in the objective's direction."""
        return a - b if self.direction == "max" else b - a


@dataclass
class Decision:
    kept: bool
    why: str


def decide(objective: Objective, candidate: Measurement, incumbent: Measurement) -> Decision:
    """Keep or reject `candidate` against `incumbent` (both validation measurements: GuardrailError otherwise)."""
    for_decisions(candidate, incumbent)
    metric = objective.metric
    c, i = candidate.value(metric), incumbent.value(metric)
    gain = objective.better(c, i)
    if objective.rule == "interval":
        bound = candidate.ci_low if objective.direction == "max" else candidate.ci_high
        clears = objective.better(bound, i) > objective.margin
        why = (f"{metric} {c:.3f} (95% CI [{candidate.ci_low:.3f}, {candidate.ci_high:.3f}], n={candidate.n}) vs "
               f"incumbent {i:.3f}: the interval's {'lower' if objective.direction == 'max' else 'upper'} bound "
               f"{'clears' if clears else 'does not clear'} the incumbent + margin {objective.margin}")
        return Decision(clears, why)
    kept = gain > objective.margin
    why = (f"{metric} {c:.3f} vs incumbent {i:.3f} on validation (n={candidate.n}): gain {gain:+.3f} "
           f"{'>' if kept else '<='} margin {objective.margin}")
    return Decision(kept, why)
