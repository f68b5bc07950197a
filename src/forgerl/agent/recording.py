"""How an episode is recorded and scored: one implementation for every driver.

The white-box loop (agent/loop.py), the gateway's sessions (gateway/sessions.py, in-process and
remote engine alike) and the gateway's end of session (gateway/core.py) all record calls and
score episodes. They used to do so each in their own copy; a field added to one copy and not the
other would make gateway-trained and loop-trained trajectories differ silently. Here:

* `llm_call`: an engine result -> the recorded LLMCall (DESIGN contract 1: ids and logprobs
  verbatim, every sampled token trainable).
* `score_episode`: the environment's events and reward onto the trajectory; a verifier that
  crashes makes it FAILED at the verifier boundary with no reward, never a fake zero (contract 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from forgerl.types import Boundary, Failure, LLMCall, Trajectory, TrajectoryStatus

if TYPE_CHECKING:
    from forgerl.engine.base import GenerationResult
    from forgerl.envs.base import Environment

__all__ = ["llm_call", "record_env_events", "score_episode"]


def llm_call(prompt_ids: Sequence[int], result: GenerationResult, *, parse_error: str | None = None) -> LLMCall:
    """The LLMCall for `result` sampled after `prompt_ids`: ids, logprobs, version, finish reason,
    cache hits and timings exactly as the engine reported them; the loss may train on every token."""
    return LLMCall(
        prompt_ids=list(prompt_ids), completion_ids=list(result.completion_ids),
        completion_logprobs=list(result.logprobs), loss_mask=[1] * len(result.completion_ids),
        policy_version=result.policy_version, finish_reason=result.finish_reason,
        cached_prompt_tokens=result.cached_tokens, timings=result.timings, parse_error=parse_error,
    )


def record_env_events(traj: Trajectory, env: Environment) -> None:
    """What the environment injected or noticed (noise events, retries), kept even on failure."""
    try:
        events = env.events()
    except Exception:  # noqa: BLE001 — a broken environment must not hide the episode's own outcome
        return
    if events:
        traj.metadata["env_events"] = events


def score_episode(traj: Trajectory, env: Environment) -> Failure | None:
    """Score `traj` with `env`: its events, then its reward, breakdown and evidence. When the
    verifier raises, the trajectory becomes FAILED at the verifier boundary with no reward, and
    that failure is returned (the caller words its end reason); None when it was scored."""
    record_env_events(traj, env)
    try:
        verdict = env.reward(traj)
    except Exception as exc:  # noqa: BLE001 — any verifier crash is the verifier's failure, not the agent's
        failure = Failure(boundary=Boundary.VERIFIER, message=f"{type(exc).__name__}: {exc}", turn=len(traj.calls))
        traj.status, traj.reward, traj.reward_breakdown, traj.failure = TrajectoryStatus.FAILED, None, {}, failure
        return failure
    traj.reward, traj.reward_breakdown = verdict.score, dict(verdict.breakdown)
    traj.metadata["reward_evidence"] = verdict.evidence
    return None
