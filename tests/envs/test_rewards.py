"""Reward composition: each process signal, each weight, the cap, the speed reward against the gold
path, excused (injected) tool errors, and the infrastructure rule (a crashing verifier is an
error that fails the episode, never a zero)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from forgerl.agent.loop import run_episode
from forgerl.chat import get_format
from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.arithmetic import ArithmeticEnv
from forgerl.envs.base import make_env, run_gold, sample_task
from forgerl.envs.rewards import RewardWeights, Verdict, compose_reward, run_verifier, speed_factor, verify_number
from forgerl.errors import SandboxError, VerifierError
from forgerl.types import Boundary, Failure, LLMCall, Message, Trajectory, TrajectoryStatus


def trajectory(parse: int = 0, tool: int = 0, calls: int = 0) -> Trajectory:
    errors = [Failure(boundary=Boundary.PARSE, message="p")] * parse + [Failure(boundary=Boundary.TOOL, message="t")] * tool
    llm = [LLMCall(prompt_ids=[1], completion_ids=[], completion_logprobs=[], loss_mask=[], policy_version=0,
                   finish_reason="stop")] * calls
    return Trajectory(errors=errors, calls=llm)


CORRECT, WRONG = Verdict(outcome=1.0), Verdict(outcome=0.0)


def test_default_weights_give_the_outcome_and_record_every_signal():
    result = compose_reward(CORRECT, trajectory(parse=2, tool=3, calls=9), gold_calls=3)
    assert result.score == 1.0
    b = result.breakdown
    assert (b["format_errors"], b["tool_errors"], b["llm_calls"], b["gold_calls"]) == (2, 3, 9, 3)
    assert b["speed"] == pytest.approx(1 / 3)
    assert result.evidence["process"]["llm_calls"] == 9 and result.evidence["weights"]["outcome"] == 1.0
    assert compose_reward(WRONG, trajectory(parse=2), gold_calls=3).score == 0.0


@pytest.mark.parametrize(
    ("weights", "traj", "expected"),
    [
        (RewardWeights(outcome=0.5), trajectory(), 0.5),
        (RewardWeights(format_error=0.1), trajectory(parse=2), 1.0 - 0.2),
        (RewardWeights(tool_error=0.05), trajectory(tool=4), 1.0 - 0.2),
        (RewardWeights(turn=0.01), trajectory(calls=5), 1.0 - 0.05),
        (RewardWeights(slowness=0.3), trajectory(calls=6), 1.0 - 0.3 * (1 - 3 / 6)),
        (RewardWeights(slowness=0.3), trajectory(calls=2), 1.0),  # faster than gold: no bonus, no loss
        (RewardWeights(format_error=1.0, max_process_penalty=0.25), trajectory(parse=3), 0.75),  # capped
    ],
)
def test_each_weight_moves_the_score_by_its_component(weights, traj, expected):
    result = compose_reward(CORRECT, traj, weights, gold_calls=3)
    assert result.score == pytest.approx(expected)
    process = sum(v for k, v in result.breakdown.items() if k.startswith("r_") and k != "r_outcome")
    assert result.breakdown["r_outcome"] + process == pytest.approx(result.score)


def test_speed_is_gated_by_the_outcome_and_parallel_calls_win():
    weights = RewardWeights(slowness=0.5)
    assert compose_reward(WRONG, trajectory(calls=12), weights, gold_calls=3).score == 0.0  # no reward for failing fast
    parallel = compose_reward(CORRECT, trajectory(calls=3), weights, gold_calls=3).score
    sequential = compose_reward(CORRECT, trajectory(calls=5), weights, gold_calls=3).score
    assert parallel == 1.0 and sequential < parallel
    assert speed_factor(4, None) == 1.0 and speed_factor(8, 4) == 0.5


def test_shaped_preset_matches_its_documented_example():
    result = compose_reward(CORRECT, trajectory(parse=1, calls=6), RewardWeights.shaped(), gold_calls=3)
    assert result.score == pytest.approx(0.8)


def test_injected_tool_errors_are_excused():
    weights = RewardWeights(tool_error=0.1)
    result = compose_reward(CORRECT, trajectory(tool=3), weights, excused_tool_errors=2)
    assert result.breakdown["tool_errors"] == 1 and result.score == pytest.approx(0.9)
    assert compose_reward(CORRECT, trajectory(tool=1), weights, excused_tool_errors=5).breakdown["tool_errors"] == 0


def test_weights_and_verdicts_are_validated():
    with pytest.raises(ValidationError):
        RewardWeights(format_error=-0.1)
    with pytest.raises(ValidationError):
        RewardWeights(speed=0.1)  # unknown field
    with pytest.raises(ValidationError, match="in \\[0, 1\\]"):
        Verdict(outcome=1.5)


def test_verify_number_checks_what_it_says():
    assert verify_number({}, 12, 12).outcome == 1.0
    assert verify_number({"tolerance": 0.1}, 12.05, 12).outcome == 1.0
    nothing = verify_number({}, None, 12)
    assert nothing.outcome == 0.0 and nothing.parts["submitted"] == 0.0 and nothing.evidence["found"] == "nothing submitted"
    assert verify_number({}, True, 1).outcome == 0.0  # a boolean is not a number
    with pytest.raises(VerifierError, match="gold answer must be a number"):
        verify_number({}, 1, None)
    with pytest.raises(VerifierError, match="cannot check"):
        verify_number({"type": "rubric"}, 1, 1)


def test_verifier_crashes_are_infra_failures_not_zeros():
    def crashes(_: Trajectory) -> Verdict:
        raise KeyError("missing cell")

    with pytest.raises(VerifierError, match="verifier crashed with KeyError"):
        run_verifier(crashes, Trajectory())

    def sandbox_died(_: Trajectory) -> Verdict:
        raise SandboxError("container exited")

    with pytest.raises(SandboxError):
        run_verifier(sandbox_died, Trajectory())
    with pytest.raises(VerifierError, match="returned float"):
        run_verifier(lambda _: 0.0, Trajectory())  # type: ignore[arg-type, return-value]


class _BrokenVerifierEnv(ArithmeticEnv):
    def verify(self, trajectory: Trajectory) -> Verdict:
        raise RuntimeError("disk full")


def test_a_crashing_verifier_fails_the_episode_with_no_reward(tokenizer):
    fmt, task = get_format("minimax_m2"), sample_task("arithmetic", 0)
    env = _BrokenVerifierEnv()
    replies = [fmt.render_assistant_body(Message(role="assistant", reasoning="go", tool_calls=r))
               for r in env.gold_solution(task)]
    traj = asyncio.run(run_episode(ScriptedEngine(tokenizer, replies), fmt, env, task,
                                   sampling=SamplingParams(max_tokens=300), max_turns=5, max_total_tokens=4000))
    assert traj.status == TrajectoryStatus.FAILED and traj.reward is None
    assert traj.failure.boundary == Boundary.VERIFIER and "disk full" in traj.failure.message


def test_make_env_weights_apply_to_the_gold_path():
    task = sample_task("arithmetic", 3)
    env = make_env("arithmetic", 3, weights=RewardWeights.shaped())
    _, result = asyncio.run(run_gold(env, task))
    assert result.score == 1.0 and result.evidence["weights"]["format_error"] == 0.1
    assert result.breakdown["llm_calls"] == result.breakdown["gold_calls"] == 3
