"""One recorder and one scorer (agent/recording.py) for the agent loop and the gateway: the
drivers must not grow their own copies again, and the shared ones behave as documented."""

from __future__ import annotations

import ast
from pathlib import Path

from forgerl.agent.recording import llm_call, score_episode
from forgerl.engine.base import GenerationResult
from forgerl.envs.base import make_env, sample_task
from forgerl.types import Boundary, Timings, Trajectory, TrajectoryStatus

SRC = Path(__file__).resolve().parents[2] / "src" / "forgerl"
DRIVERS = [SRC / "agent", SRC / "gateway"]


def _calls_in(path: Path, predicate) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{path.relative_to(SRC)}:{n.lineno}" for n in ast.walk(tree) if isinstance(n, ast.Call) and predicate(n)]


def test_llm_calls_are_built_only_by_the_shared_constructor():
    def builds_llm_call(node: ast.Call) -> bool:
        return isinstance(node.func, ast.Name) and node.func.id == "LLMCall"

    found = [hit for d in DRIVERS for p in sorted(d.rglob("*.py")) if p.name != "recording.py"
             for hit in _calls_in(p, builds_llm_call)]
    assert not found, f"LLMCall built field by field outside agent/recording.py: {found}; use llm_call()"


def test_episodes_are_scored_only_by_the_shared_scorer():
    def calls_reward(node: ast.Call) -> bool:
        return isinstance(node.func, ast.Attribute) and node.func.attr == "reward"

    found = [hit for d in DRIVERS for p in sorted(d.rglob("*.py")) if p.name != "recording.py"
             for hit in _calls_in(p, calls_reward)]
    assert not found, f"env.reward called outside agent/recording.py: {found}; use score_episode()"


def test_llm_call_keeps_the_engine_result_verbatim():
    result = GenerationResult([5, 6, 7], [-0.1, -0.2, -0.3], "length", 4, 2, cached_tokens=1, timings=Timings(total_s=1.5))
    call = llm_call((1, 2), result, parse_error="bad")
    assert call.prompt_ids == [1, 2] and call.completion_ids == [5, 6, 7]
    assert call.completion_logprobs == [-0.1, -0.2, -0.3] and call.loss_mask == [1, 1, 1]
    assert (call.policy_version, call.finish_reason, call.cached_prompt_tokens) == (4, "length", 1)
    assert call.timings.total_s == 1.5 and call.parse_error == "bad"
    result.completion_ids.append(8)  # the record is a copy: later changes to the result do not leak in
    assert call.completion_ids == [5, 6, 7]


def test_score_episode_scores_and_a_crashing_verifier_is_failed_not_zero(monkeypatch):
    task = sample_task("arithmetic", seed=3)
    env = make_env("arithmetic", seed=3)
    traj = Trajectory(messages=env.reset(task))
    assert score_episode(traj, env) is None
    assert traj.reward == 0.0 and traj.status == TrajectoryStatus.COMPLETED and "reward_evidence" in traj.metadata

    def crash(_traj):
        raise RuntimeError("verifier down")

    monkeypatch.setattr(env, "reward", crash)
    failure = score_episode(traj, env)
    assert failure is not None and failure.boundary == Boundary.VERIFIER and "verifier down" in failure.message
    assert traj.status == TrajectoryStatus.FAILED and traj.reward is None and traj.reward_breakdown == {}
    assert traj.failure == failure


def test_score_episode_keeps_events_when_the_environment_cannot_list_them(monkeypatch):
    env = make_env("arithmetic", seed=3)
    traj = Trajectory(messages=env.reset(sample_task("arithmetic", seed=3)))
    monkeypatch.setattr(env, "events", lambda: (_ for _ in ()).throw(OSError("gone")))
    assert score_episode(traj, env) is None and traj.reward is not None
