"""What the run doctor reports: one `Finding` per condition it sees in a run, with its evidence.

A finding is meant to be acted on by a person or by the experiment agent (forgerl/evolve), so it
carries the evidence that shows the condition (the steps, the values, example trajectory ids) and a
suggested change — in words, and where a config knob is the remedy, as a dotted-key change the agent
can apply (`{"loss.clip_high": 0.3}`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["info", "warning", "critical"]


class Finding(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    """Stable identifier of the condition, e.g. `entropy_collapse`, `heldout_falls`."""
    severity: Severity
    title: str
    """One line a person reads first."""
    evidence: dict[str, Any] = Field(default_factory=dict)
    """The values that show it (metric names to numbers or short series)."""
    steps: list[int] = Field(default_factory=list)
    """Training steps where the condition shows."""
    trajectory_ids: list[str] = Field(default_factory=list)
    """Example trajectories from the run's store."""
    suggestion: str = ""
    """What to change, in words."""
    config_change: dict[str, Any] = Field(default_factory=dict)
    """The suggestion as dotted TrainConfig keys to new values, when a knob is the remedy."""
