"""The agent loop with a scripted engine: token-exact chaining, errors as observations, budgets,
failures attributed to their boundary, and nothing recorded ever lost."""

from __future__ import annotations

import asyncio

import pytest

from forgerl.agent.context import DropOldToolOutputs
from forgerl.agent.loop import run_episode
from forgerl.chat import encode_segments
from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.arithmetic import ArithmeticEnv
from forgerl.types import Boundary, Message, ToolCall, Trajectory, TrajectoryStatus


def body(fmt, calls=(), content="", reasoning="Let me work this out.") -> str:
    message = Message(role="assistant", content=content, reasoning=reasoning, tool_calls=list(calls))
    return fmt.render_assistant_body(message)


def gold_replies(fmt, env, task) -> list[str]:
    return [body(fmt, round_) for round_ in env.gold_solution(task)]


def run(engine, fmt, env, task, *, max_tokens=400, max_turns=8, max_total_tokens=8000, **kwargs) -> Trajectory:
    sampling = SamplingParams(max_tokens=max_tokens)
    return asyncio.run(run_episode(engine, fmt, env, task, sampling=sampling, max_turns=max_turns,
                                   max_total_tokens=max_total_tokens, **kwargs))


def assert_chained(traj: Trajectory) -> None:
    for prev, nxt in zip(traj.calls, traj.calls[1:], strict=False):
        head = prev.prompt_ids + prev.completion_ids
        assert nxt.prompt_ids[: len(head)] == head and len(nxt.prompt_ids) > len(head)


def test_gold_episode_with_parallel_calls_scores_one(fmt, tokenizer, env, task):
    replies = gold_replies(fmt, env, task)
    engine = ScriptedEngine(tokenizer, replies)
    traj = run(engine, fmt, env, task)
    assert traj.status == TrajectoryStatus.COMPLETED and traj.reward == 1.0, traj.failure
    assert traj.end_reason == "environment done" and traj.errors == []
    assert len(traj.messages[2].tool_calls) == 2  # the parallel round
    assert [m.role for m in traj.messages[3:5]] == ["tool", "tool"]
    assert traj.messages[2].reasoning == "Let me work this out."
    for call, reply in zip(traj.calls, replies, strict=True):
        assert call.completion_ids == tokenizer.encode(reply, add_special_tokens=False)  # verbatim
        assert call.completion_logprobs == [-0.5] * len(call.completion_ids)
        assert call.loss_mask == [1] * len(call.completion_ids)
        assert call.finish_reason == "stop" and call.parse_error is None
    assert engine.prompts == [c.prompt_ids for c in traj.calls]


def test_prompts_extend_exactly_and_match_a_full_render(fmt, tokenizer, env, task):
    traj = run(ScriptedEngine(tokenizer, gold_replies(fmt, env, task)), fmt, env, task)
    first = encode_segments(tokenizer, fmt.render(traj.messages[:2], traj.tools, add_generation_prompt=True)).ids
    assert traj.calls[0].prompt_ids == first
    assert_chained(traj)
    assert traj.metadata["new_roots"] == []
    # contract 2: inside one user turn the appended ids equal a fresh render of the history
    history = traj.messages[:-2]  # everything before the last assistant reply
    full = encode_segments(tokenizer, fmt.render(history, traj.tools, add_generation_prompt=True)).ids
    assert traj.calls[-1].prompt_ids == full


def test_parse_error_becomes_an_observation_and_the_episode_goes_on(fmt, tokenizer, env, task):
    garbled = body(fmt, content="answer") + " trailing text" + fmt.end_of_message
    traj = run(ScriptedEngine(tokenizer, [garbled, *gold_replies(fmt, env, task)]), fmt, env, task)
    assert traj.status == TrajectoryStatus.COMPLETED and traj.reward == 1.0
    assert traj.calls[0].parse_error and "end-of-message" in traj.calls[0].parse_error
    assert [e.boundary for e in traj.errors] == [Boundary.PARSE] and traj.errors[0].turn == 0
    observation = traj.messages[3]
    assert observation.role == "tool" and observation.content.startswith("Error: your last output could not be parsed")
    assert traj.reward_breakdown["format_errors"] == 1.0
    assert_chained(traj)


def test_unknown_tool_is_reported_to_the_model(fmt, tokenizer, env, task):
    bad = body(fmt, [ToolCall(name="search_web", arguments={"query": "x"})])
    traj = run(ScriptedEngine(tokenizer, [bad, *gold_replies(fmt, env, task)]), fmt, env, task)
    assert traj.reward == 1.0
    observation = traj.messages[3].content
    assert observation.startswith("Error:") and "unknown tool 'search_web'" in observation
    assert "calculator, submit_answer" in observation
    # formats that type arguments through the schemas (minimax_m2) reject it while parsing
    assert len(traj.errors) == 1 and traj.errors[0].boundary in (Boundary.TOOL, Boundary.PARSE)


def test_missing_argument_is_reported_and_the_tool_is_not_run(fmt, tokenizer, env, task):
    bad = body(fmt, [ToolCall(name="calculator", arguments={"expr": "1+1"})])
    traj = run(ScriptedEngine(tokenizer, [bad, *gold_replies(fmt, env, task)]), fmt, env, task)
    observation = traj.messages[3].content
    assert observation.startswith("Error:") and "missing required argument" in observation
    assert "expression" in observation
    assert traj.reward_breakdown["calculator_calls"] == 3.0  # the bad call never reached the tool
    assert len(traj.errors) == 1 and traj.reward == 1.0


class StrictEnv(ArithmeticEnv):
    """The calculator's schema forbids undeclared arguments: the formats keep them when parsing,
    so it is the loop's own check that must refuse the call."""

    def tools(self):
        calculator, submit = super().tools()
        strict = {**calculator.parameters, "additionalProperties": False}
        return [calculator.model_copy(update={"parameters": strict}), submit]


def test_undeclared_argument_is_refused_by_the_loop(fmt, tokenizer, task):
    env = StrictEnv()
    bad = body(fmt, [ToolCall(name="calculator", arguments={"expression": "1+1", "precision": 3})])
    traj = run(ScriptedEngine(tokenizer, [bad, *gold_replies(fmt, env, task)]), fmt, env, task)
    assert traj.messages[2].tool_calls[0].arguments == {"expression": "1+1", "precision": 3}
    observation = traj.messages[3]
    assert observation.content == (
        "Error: invalid arguments for calculator: unexpected argument 'precision' (accepted: expression)."
    )
    assert observation.tool_call_id == traj.messages[2].tool_calls[0].id
    assert [e.boundary for e in traj.errors] == [Boundary.TOOL]
    assert traj.reward_breakdown["calculator_calls"] == 3.0 and traj.reward == 1.0


class CrashingEnv(ArithmeticEnv):
    async def execute(self, call: ToolCall) -> str:
        if call.arguments.get("expression") == "crash":
            raise RuntimeError("disk on fire")
        return await super().execute(call)


def test_tool_errors_and_crashes_become_observations(fmt, tokenizer, task):
    calls = [ToolCall(name="calculator", arguments={"expression": "1/0"}),
             ToolCall(name="calculator", arguments={"expression": "crash"})]
    env = CrashingEnv()
    traj = run(ScriptedEngine(tokenizer, [body(fmt, calls), *gold_replies(fmt, env, task)]), fmt, env, task)
    assert traj.messages[3].content == "Error: division by zero"
    assert traj.messages[4].content == "Error: tool calculator failed with RuntimeError: disk on fire"
    assert [e.boundary for e in traj.errors] == [Boundary.TOOL, Boundary.TOOL]
    assert traj.status == TrajectoryStatus.COMPLETED and traj.reward == 1.0


def test_engine_error_fails_the_episode_and_keeps_the_calls(fmt, tokenizer, env, task):
    one = gold_replies(fmt, env, task)[:1]  # the script runs out on the second call
    traj = run(ScriptedEngine(tokenizer, one), fmt, env, task)
    assert traj.status == TrajectoryStatus.FAILED
    assert traj.failure.boundary == Boundary.ENGINE and traj.failure.turn == 1
    assert traj.reward is None and len(traj.calls) == 1 and len(traj.messages) == 5


class BrokenEngine(ScriptedEngine):
    async def generate(self, prompt_ids, params, session_id=None):
        raise RuntimeError("CUDA error: device-side assert")


def test_any_exception_from_the_engine_is_an_engine_failure(fmt, tokenizer, env, task):
    traj = run(BrokenEngine(tokenizer, []), fmt, env, task)
    assert traj.status == TrajectoryStatus.FAILED and traj.failure.boundary == Boundary.ENGINE
    assert "device-side assert" in traj.failure.message and traj.calls == []


def test_max_turns_truncates(fmt, tokenizer, env, task):
    loop_reply = body(fmt, [ToolCall(name="calculator", arguments={"expression": "1+1"})])
    traj = run(ScriptedEngine(tokenizer, [loop_reply], cycle=True), fmt, env, task, max_turns=3)
    assert traj.status == TrajectoryStatus.TRUNCATED and len(traj.calls) == 3
    assert "max_turns=3" in traj.end_reason
    assert traj.reward == 0.0  # truncated episodes are still scored: valid RL data


def test_final_answer_without_tool_calls_completes(fmt, tokenizer, env, task):
    traj = run(ScriptedEngine(tokenizer, [body(fmt, content="It is 42.")]), fmt, env, task)
    assert traj.status == TrajectoryStatus.COMPLETED and traj.end_reason == "final answer"
    assert traj.messages[-1].content == "It is 42." and traj.reward == 0.0


def test_cut_completion_gets_its_end_marker_as_context(fmt, tokenizer, env, task):
    long = body(fmt, [ToolCall(name="calculator", arguments={"expression": "1+1"})], reasoning="hmm " * 200)
    traj = run(ScriptedEngine(tokenizer, [long, *gold_replies(fmt, env, task)]), fmt, env, task, max_tokens=120)
    cut, nxt = traj.calls[0], traj.calls[1]
    assert cut.finish_reason == "length" and len(cut.completion_ids) == 120 == len(cut.loss_mask)
    eom = tokenizer.convert_tokens_to_ids(fmt.end_of_message)
    assert eom not in cut.completion_ids
    assert nxt.prompt_ids[len(cut.prompt_ids) + 120] == eom  # appended as prompt, loss mask 0
    assert_chained(traj)
    assert "cut off at 120 tokens" in traj.messages[3].content and traj.errors[0].boundary == Boundary.PARSE
    assert traj.reward_breakdown["calculator_calls"] == 3.0  # the cut call's tool call was not run
    assert traj.reward == 1.0


def test_context_budget_truncates(fmt, tokenizer, env, task):
    first = len(encode_segments(tokenizer, fmt.render(env.reset(task), env.tools())).ids)
    traj = run(ScriptedEngine(tokenizer, gold_replies(fmt, env, task)), fmt, env, task, max_total_tokens=first + 10)
    assert traj.status == TrajectoryStatus.TRUNCATED and "context budget" in traj.end_reason
    assert len(traj.calls) == 1 and traj.calls[0].finish_reason == "length"
    assert len(traj.calls[0].prompt_ids) + len(traj.calls[0].completion_ids) == first + 10


def test_context_rewrite_starts_a_new_root(fmt, tokenizer, env, task):
    replies = gold_replies(fmt, env, task)
    plain = run(ScriptedEngine(tokenizer, replies), fmt, env, task)
    assert plain.metadata["new_roots"] == []
    budget = len(plain.calls[1].prompt_ids) - 1  # every prompt after the first exceeds it
    manager = DropOldToolOutputs(budget, keep_last=1, placeholder="[dropped]")
    traj = run(ScriptedEngine(tokenizer, replies), fmt, ArithmeticEnv(), task, context_manager=manager)
    assert traj.reward == 1.0 and traj.metadata["new_roots"] == [1, 2]
    # call 1: the first tool output is dropped and the context rendered fresh
    context = [*traj.messages[:3], traj.messages[3].model_copy(update={"content": "[dropped]"}), traj.messages[4]]
    fresh = encode_segments(tokenizer, fmt.render(context, traj.tools, add_generation_prompt=True)).ids
    assert traj.calls[1].prompt_ids == fresh != plain.calls[1].prompt_ids
    # call 2: the second output of round 1 is dropped too, so it no longer extends call 1
    prev, nxt = traj.calls[1], traj.calls[2]
    assert nxt.prompt_ids[: len(prev.prompt_ids) + len(prev.completion_ids)] != prev.prompt_ids + prev.completion_ids
    assert tokenizer.decode(nxt.prompt_ids).count("[dropped]") == 2
    assert [m.content for m in traj.messages] == [m.content for m in plain.messages]  # the log keeps everything


def test_trajectory_json_round_trip(fmt, tokenizer, env, task):
    garbled = body(fmt, content="x") + "y" + fmt.end_of_message
    traj = run(ScriptedEngine(tokenizer, [garbled, *gold_replies(fmt, env, task)]), fmt, env, task)
    assert traj.errors and traj.calls
    assert Trajectory.model_validate_json(traj.model_dump_json()) == traj


class FailingVerifierEnv(ArithmeticEnv):
    def reward(self, trajectory):
        raise KeyError("gold")


def test_verifier_crash_is_a_verifier_failure(fmt, tokenizer, task):
    env = FailingVerifierEnv()
    traj = run(ScriptedEngine(tokenizer, gold_replies(fmt, env, task)), fmt, env, task)
    assert traj.status == TrajectoryStatus.FAILED and traj.failure.boundary == Boundary.VERIFIER
    assert len(traj.calls) == 3 and traj.reward is None


def test_cancellation_leaves_a_failed_trajectory_in_the_callers_hands(fmt, tokenizer, env, task):
    engine = ScriptedEngine(tokenizer, gold_replies(fmt, env, task), delay_s=0.01)
    handle = Trajectory()

    async def go():
        coro = run_episode(engine, fmt, env, task, sampling=SamplingParams(max_tokens=400), max_turns=8,
                           max_total_tokens=8000, trajectory=handle)
        await asyncio.wait_for(coro, timeout=0.3)

    with pytest.raises(TimeoutError):
        asyncio.run(go())
    assert handle.status == TrajectoryStatus.FAILED and handle.failure.boundary == Boundary.TIMEOUT
    assert handle.task_id == task.id and handle.messages  # what was recorded is still there


def test_bad_budgets_are_rejected_up_front(tokenizer, env, task):
    from forgerl.chat import get_format
    from forgerl.errors import ConfigError

    with pytest.raises(ConfigError):
        run(ScriptedEngine(tokenizer, []), get_format("minimax_m2"), env, task, max_turns=0)
