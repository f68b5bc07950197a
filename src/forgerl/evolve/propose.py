"""The proposer protocol: what a proposer sees (`SearchState`) and what it answers (`Batch`).

A proposer is pluggable: the offline successive-halving search (evolve/halving.py) and a model behind
an OpenAI-compatible endpoint (evolve/model_proposer.py) both implement `propose(state) -> Batch`.
A proposal carries its fidelity (training steps, validation tasks); the loop decides keep/reject only
at full fidelity (the budget's steps_per_run and the objective's validation_tasks), where the
incumbent was measured too; cheaper measurements are screening, for the proposer's own use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from forgerl.doctor.findings import Finding
from forgerl.evolve.budget import Budget
from forgerl.evolve.decide import Objective
from forgerl.evolve.runner import RunResult
from forgerl.evolve.space import Candidate, SearchSpace


@dataclass
class Proposal:
    candidate: Candidate
    steps: int
    tasks: int
    source: str
    """Who proposed it and in which round: `halving rung 1`, `model`, `doctor:entropy_collapse`, `baseline`."""
    reason: str = ""


@dataclass
class Rejection:
    """A proposal that could not run (malformed, outside the space), kept in the log with why."""

    source: str
    why: str
    raw: str = ""


@dataclass
class Batch:
    proposals: list[Proposal] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    done: bool = False
    """The proposer has nothing more to propose (the search stops after this batch)."""


@dataclass
class Outcome:
    """One measured proposal: what ran, what came back, what the doctor said, what was decided."""

    proposal: Proposal
    result: RunResult
    findings: list[Finding]
    decision: str
    """`baseline`, `kept`, `rejected` (full fidelity, against the incumbent) or `screened` (lower fidelity)."""
    why: str
    index: int = -1
    """The run's number: its directory is OUT/runs/NNN and its log line says `index`."""

    def value(self, objective: Objective) -> float:
        return self.result.measurement.value(objective.metric)


@dataclass
class SearchState:
    base_config: dict[str, Any]
    space: SearchSpace
    objective: Objective
    budget: Budget
    incumbent: Outcome
    history: list[Outcome] = field(default_factory=list)

    def seen(self) -> set[str]:
        return {o.proposal.candidate.key() for o in self.history} | {self.incumbent.proposal.candidate.key()}


class Proposer(Protocol):
    name: str

    def propose(self, state: SearchState) -> Batch:
        ...
