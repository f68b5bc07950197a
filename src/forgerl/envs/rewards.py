"""Rewards: an artifact-aligned outcome from the family's verifier plus process signals from the
trajectory, composed with explicit weights (M2_NOTES §1 and §5).

The per-episode reward is

    score = w.outcome * outcome                          outcome in [0, 1], from the verifier
          - w.format_error * format_errors               completions the chat format could not parse
          - w.tool_error   * tool_errors                 tool calls that failed (not injected noise)
          - w.turn         * llm_calls                   a cost per sequential LLM call
          - w.slowness     * outcome * (1 - speed)       speed = min(1, gold_calls / llm_calls)

then the process part (everything but the outcome term) is clipped at `-w.max_process_penalty`,
so a reward always lies in [-max_process_penalty, w.outcome].

M2's speed reward is "a decreasing function of completion time relative to a baseline; it rewards
parallel tool calls". Here time is counted in *sequential LLM calls* (each one an action of the
MDP), and the baseline is the task's gold path, whose independent calls share one round: an agent
that calls tools one by one needs more LLM calls than the gold and loses speed; one that matches
the gold's parallelism keeps speed = 1. Wall time would reward a fast machine rather than a fast
agent and is not reproducible, so it is recorded by the loop but not scored. The speed term is
multiplied by the outcome: failing quickly must not beat failing slowly.

Defaults: outcome 1.0 and every process weight 0, so the reward is the verified outcome and a gold
path scores exactly 1.0 whatever noise it had to retry through. MiniMax does not publish its α, β
(M2_NOTES §1); `RewardWeights.shaped()` is a documented starting point with small penalties. Every
signal is recorded in `RewardResult.breakdown` whatever its weight, so turning a weight on later
needs no re-collection of data.

The infrastructure rule (DESIGN.md contract 4): a score is only produced when the verifier actually
ran. A verifier that crashes, or a sandbox that fails under it, raises `VerifierError` (or
`SandboxError`); it never returns 0. The agent loop turns that into a FAILED trajectory with no
reward, which is kept out of the loss instead of becoming a fake zero in a group.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from forgerl.errors import SandboxError, VerifierError
from forgerl.types import Boundary, Trajectory


class RewardResult(BaseModel):
    """A verdict on one episode: the scalar reward, every named signal, and what it was based on."""

    model_config = ConfigDict(extra="forbid")

    score: float
    breakdown: dict[str, float] = Field(default_factory=dict)
    evidence: dict[str, Any] = Field(default_factory=dict)


class Verdict(BaseModel):
    """What a family's verifier found: an outcome in [0, 1], extra named numbers (e.g. `correct`),
    and the evidence: what was checked and what was found."""

    model_config = ConfigDict(extra="forbid")

    outcome: float
    parts: dict[str, float] = Field(default_factory=dict)
    evidence: dict[str, Any] = Field(default_factory=dict)

    @field_validator("outcome")
    @classmethod
    def _in_unit_interval(cls, value: float) -> float:
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"a verifier's outcome must be in [0, 1], got {value}")
        return value


class RewardWeights(BaseModel):
    """How the reward signals are combined. All weights are magnitudes (>= 0); penalties subtract."""

    model_config = ConfigDict(extra="forbid")

    outcome: float = Field(1.0, ge=0)
    """Weight of the verifier's outcome in [0, 1]: the artifact-aligned part of the reward (M2 §5)."""
    format_error: float = Field(0.0, ge=0)
    """Penalty per completion the chat format could not parse (M2's tool-call format-error process
    penalty, M2_NOTES §1). Counted from trajectory.errors with boundary `parse`."""
    tool_error: float = Field(0.0, ge=0)
    """Penalty per failed tool call (unknown tool, bad arguments, tool raised). Failures injected by
    environment noise are excused: the agent did nothing wrong."""
    turn: float = Field(0.0, ge=0)
    """Cost per sequential LLM call: a plain length penalty, for runs where speed alone is too weak."""
    slowness: float = Field(0.0, ge=0)
    """M2's speed reward: at most this much is lost by a correct episode that needed more sequential
    LLM calls than the gold path (1 - gold_calls / llm_calls, scaled by the outcome)."""
    max_process_penalty: float = Field(0.5, ge=0)
    """Cap on the sum of all process penalties, so one broken episode cannot dominate a group."""

    @classmethod
    def shaped(cls) -> RewardWeights:
        """Small process penalties on top of the outcome: a starting point, not M2's (unpublished)
        values. A correct episode with one format error and twice the gold's calls scores 0.8."""
        return cls(format_error=0.1, tool_error=0.02, turn=0.0, slowness=0.2, max_process_penalty=0.5)


def count_failures(trajectory: Trajectory, boundary: Boundary) -> int:
    return sum(1 for e in trajectory.errors if e.boundary == boundary)


def count_llm_calls(trajectory: Trajectory) -> int:
    """Sequential LLM calls: the recorded calls, or the assistant messages of a model-free replay."""
    if trajectory.calls:
        return len(trajectory.calls)
    return sum(1 for m in trajectory.messages if m.role == "assistant")


def speed_factor(llm_calls: int, gold_calls: int | None) -> float:
    """1.0 at or below the gold path's number of sequential calls, decreasing as gold/used beyond it."""
    if not gold_calls or llm_calls <= gold_calls:
        return 1.0
    return gold_calls / llm_calls


def run_verifier(verify: Callable[[Trajectory], Verdict], trajectory: Trajectory) -> Verdict:
    """Call a verifier under the infrastructure rule: any crash becomes VerifierError (a sandbox
    failure stays SandboxError), never a silent zero."""
    try:
        verdict = verify(trajectory)
    except (VerifierError, SandboxError):
        raise
    except Exception as exc:
        raise VerifierError(f"the verifier crashed with {type(exc).__name__}: {exc}") from exc
    if not isinstance(verdict, Verdict):
        raise VerifierError(f"the verifier returned {type(verdict).__name__}, expected a Verdict")
    return verdict


def compose_reward(
    verdict: Verdict,
    trajectory: Trajectory,
    weights: RewardWeights | None = None,
    *,
    gold_calls: int | None = None,
    excused_tool_errors: int = 0,
) -> RewardResult:
    """Combine the verifier's outcome with the trajectory's process signals (see module docstring).

    `gold_calls` is the number of sequential LLM calls of the task's gold path (its rounds);
    `excused_tool_errors` is how many tool failures were injected by environment noise."""
    w = weights or RewardWeights()
    format_errors = count_failures(trajectory, Boundary.PARSE)
    tool_errors = max(0, count_failures(trajectory, Boundary.TOOL) - excused_tool_errors)
    llm_calls = count_llm_calls(trajectory)
    speed = speed_factor(llm_calls, gold_calls)
    terms = {
        "r_outcome": w.outcome * verdict.outcome,
        "r_format": -w.format_error * format_errors,
        "r_tool": -w.tool_error * tool_errors,
        "r_turns": -w.turn * llm_calls,
        "r_speed": -w.slowness * verdict.outcome * (1.0 - speed),
    }
    process = sum(v for k, v in terms.items() if k != "r_outcome")
    clipped = max(process, -w.max_process_penalty)
    breakdown = {
        **verdict.parts,
        "outcome": verdict.outcome,
        "format_errors": float(format_errors),
        "tool_errors": float(tool_errors),
        "excused_tool_errors": float(excused_tool_errors),
        "llm_calls": float(llm_calls),
        "gold_calls": float(gold_calls or 0),
        "speed": speed,
        **terms,
        "r_process_clipped": clipped - process,
    }
    evidence = {
        "verifier": verdict.evidence,
        "process": {
            "format_errors": format_errors,
            "tool_errors": tool_errors,
            "excused_tool_errors": excused_tool_errors,
            "llm_calls": llm_calls,
            "gold_calls": gold_calls,
            "speed": "min(1, gold_calls / llm_calls)",
        },
        "weights": w.model_dump(),
    }
    return RewardResult(score=terms["r_outcome"] + clipped, breakdown=breakdown, evidence=evidence)


def verify_number(spec: dict[str, Any], submitted: Any, gold: Any) -> Verdict:
    """The `exact_number` verifier: outcome 1 when a number was submitted and it equals `gold`
    within `spec["tolerance"]` (absolute and relative; default 1e-9), else 0. Nothing submitted
    (the no-op) is 0 whatever the gold is."""
    if spec.get("type", "exact_number") != "exact_number":
        raise VerifierError(f"verify_number cannot check a verifier of type {spec.get('type')!r}")
    if isinstance(gold, bool) or not isinstance(gold, int | float):
        raise VerifierError(f"the task's gold answer must be a number, got {gold!r}: fix the task data")
    tolerance = float(spec.get("tolerance", 1e-9))
    is_number = isinstance(submitted, int | float) and not isinstance(submitted, bool)
    correct = is_number and math.isclose(submitted, gold, rel_tol=tolerance, abs_tol=tolerance)
    return Verdict(
        outcome=1.0 if correct else 0.0,
        parts={"correct": float(correct), "submitted": float(submitted is not None)},
        evidence={
            "checked": f"the submitted answer equals the gold answer within {tolerance:g}",
            "submitted": submitted,
            "gold": gold,
            "found": "match" if correct else ("nothing submitted" if submitted is None else "mismatch"),
        },
    )


BLENDED_REWARD_KEY = "reward_model"
"""Trajectory.metadata key under which a reward transform that blends another score into
`reward` keeps the environment's own reward (review/train_hook.py writes it)."""


def verifier_reward(traj: Trajectory) -> float | None:
    """The environment's own reward, also after a reward model was blended into `traj.reward`.

    Lives here, next to the rewards it reads back, so the trainer can report the verifier's pass
    rate without importing the review package that does the blending."""
    meta = traj.metadata.get(BLENDED_REWARD_KEY)
    return meta["verifier_reward"] if isinstance(meta, dict) and "verifier_reward" in meta else traj.reward

