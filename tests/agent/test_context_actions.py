"""Context management as the policy's action (issue 24 item 3): the registered functions, the
loop offering them as tools and applying them after the turn, the rewrite record, and the replay
that rebuilds every prompt (ids and loss masks) from that record."""

from __future__ import annotations

import asyncio

import pytest

from forgerl.agent.context import (
    ContextActions,
    DropOldToolOutputs,
    FixedContext,
    context_function,
    drop_old_rounds,
    drop_tool_outputs,
    keep_last_turns,
    summarize,
)
from forgerl.agent.loop import run_episode
from forgerl.agent.replay import ReplayError, check_replay, replay_contexts, replay_prompts
from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.arithmetic import ArithmeticEnv
from forgerl.errors import ConfigError
from forgerl.types import Message, ToolCall, Trajectory, chain_samples

HISTORY = [
    Message(role="system", content="s"),
    Message(role="user", content="q"),
    Message(role="assistant", tool_calls=[ToolCall(name="a"), ToolCall(name="b")]),
    Message(role="tool", content="out a", name="a"),
    Message(role="tool", content="out b", name="b"),
    Message(role="assistant", tool_calls=[ToolCall(name="c"), ToolCall(name="context_drop_tool_outputs")]),
    Message(role="tool", content="out c", name="c"),
    Message(role="tool", content="ok", name="context_drop_tool_outputs"),
]


def test_drop_tool_outputs_skips_the_context_acknowledgements():
    rewritten = drop_tool_outputs(HISTORY, keep_last=1, placeholder="-")
    assert [m.content for m in rewritten] == ["s", "q", "", "-", "-", "", "out c", "ok"]
    assert drop_tool_outputs(rewritten, keep_last=1, placeholder="-") is None


def test_drop_old_rounds_keeps_every_result_of_the_last_turns():
    rewritten = drop_old_rounds(HISTORY, keep_rounds=1, placeholder="-")
    assert [m.content for m in rewritten] == ["s", "q", "", "-", "-", "", "out c", "ok"]
    assert drop_old_rounds(HISTORY, keep_rounds=2) is None
    assert drop_old_rounds(rewritten, keep_rounds=1, placeholder="-") is None


def test_keep_last_turns_keeps_whole_turns_and_the_opening():
    rewritten = keep_last_turns(HISTORY, turns=1)
    assert [m.role for m in rewritten] == ["system", "user", "user", "assistant", "tool", "tool"]
    assert rewritten[2].content == "[1 earlier turn(s) removed from the context]"
    assert keep_last_turns(HISTORY, turns=2) is None


def test_summarize_replaces_earlier_turns_with_the_note():
    rewritten = summarize(HISTORY, summary="a=1, b=2")
    assert [m.role for m in rewritten] == ["system", "user", "user", "assistant", "tool", "tool"]
    assert rewritten[2].content.endswith("a=1, b=2")
    assert summarize(HISTORY[:2], summary="x") is None


def test_unknown_functions_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown context function"):
        context_function("forget_everything")
    with pytest.raises(ConfigError, match="cannot be called by the policy"):
        ContextActions(functions=("forget_everything",))
    with pytest.raises(ConfigError, match="unknown context function"):
        FixedContext("forget_everything", 100)


# --- the loop -----------------------------------------------------------------------------------


def body(fmt, calls=(), content="", reasoning="Working.") -> str:
    return fmt.render_assistant_body(Message(role="assistant", content=content, reasoning=reasoning, tool_calls=list(calls)))


def run(engine, fmt, task, manager) -> Trajectory:
    return asyncio.run(run_episode(engine, fmt, ArithmeticEnv(), task, sampling=SamplingParams(max_tokens=400),
                                   max_turns=8, max_total_tokens=8000, context_manager=manager))


def policy_replies(fmt, task, action: ToolCall) -> list[str]:
    """The gold path with `action` added to the second round (the policy manages its context)."""
    rounds = ArithmeticEnv().gold_solution(task)
    assert len(rounds) >= 3
    return [body(fmt, r) if i != 1 else body(fmt, [*r, action]) for i, r in enumerate(rounds)]


@pytest.mark.parametrize("action", [
    ToolCall(name="context_drop_tool_outputs", arguments={"keep_last": 0}),
    ToolCall(name="context_keep_last_turns", arguments={"turns": 1}),
    ToolCall(name="context_summarize", arguments={"summary": "the first result was noted"}),
])
def test_a_context_action_starts_a_recorded_root_and_replays_exactly(fmt, tokenizer, task, action):
    manager = ContextActions()
    traj = run(ScriptedEngine(tokenizer, policy_replies(fmt, task, action)), fmt, task, manager)
    assert traj.reward == 1.0 and not traj.errors
    assert {t.name for t in traj.tools} >= {"context_drop_tool_outputs", "context_keep_last_turns", "context_summarize"}
    assert traj.metadata["new_roots"] == [2]
    [record] = traj.metadata["context_rewrites"]
    assert record["by"] == "policy" and record["function"] == action.name.removeprefix("context_")
    assert record["arguments"] == action.arguments and record["call"] == 2
    ack = next(m for m in traj.messages if m.name == action.name)
    assert ack.content.startswith("ok: the context will be rewritten")
    # the root's prompt is the rewritten context rendered fresh; the chain is broken there
    prev = traj.calls[1]
    assert traj.calls[2].prompt_ids[: len(prev.prompt_ids) + len(prev.completion_ids)] != prev.prompt_ids + prev.completion_ids
    assert check_replay(traj, tokenizer, fmt) == []


def test_replay_gives_the_same_training_ids_and_masks(fmt, tokenizer, task):
    action = ToolCall(name="context_drop_tool_outputs", arguments={"keep_last": 0})
    traj = run(ScriptedEngine(tokenizer, policy_replies(fmt, task, action)), fmt, task, ContextActions())
    replayed = traj.model_copy(deep=True)
    for call, ids in zip(replayed.calls, replay_prompts(traj, tokenizer, fmt), strict=True):
        call.prompt_ids = ids
    advantages = [1.0] * len(traj.calls)
    recorded, rebuilt = chain_samples(traj, advantages), chain_samples(replayed, advantages)
    assert len(recorded) == 2  # the rewrite splits the chain into two roots
    assert [(s.input_ids, s.loss_mask) for s in recorded] == [(s.input_ids, s.loss_mask) for s in rebuilt]
    # the context action's own tokens are trained like any other action
    acting = traj.calls[1]
    action_text = tokenizer.decode(acting.completion_ids)
    assert "context_drop_tool_outputs" in action_text and all(acting.loss_mask)


def test_a_fixed_manager_is_recorded_the_same_way(fmt, tokenizer, task):
    replies = [body(fmt, r) for r in ArithmeticEnv().gold_solution(task)]
    plain = run(ScriptedEngine(tokenizer, replies), fmt, task, None)
    manager = DropOldToolOutputs(len(plain.calls[1].prompt_ids) - 1, keep_last=1)
    traj = run(ScriptedEngine(tokenizer, replies), fmt, task, manager)
    assert traj.metadata["new_roots"] and all(r["by"] == "harness" and r["function"] == "drop_tool_outputs"
                                              for r in traj.metadata["context_rewrites"])
    assert not any(t.name.startswith("context_") for t in traj.tools)  # a fixed manager offers no tools
    assert check_replay(traj, tokenizer, fmt) == []


def test_actions_with_a_fallback_record_who_decided(fmt, tokenizer, task):
    replies = [body(fmt, r) for r in ArithmeticEnv().gold_solution(task)]
    plain = run(ScriptedEngine(tokenizer, replies), fmt, task, None)
    fallback = DropOldToolOutputs(len(plain.calls[1].prompt_ids) - 1, keep_last=1)
    action = ToolCall(name="context_keep_last_turns", arguments={"turns": 1})
    traj = run(ScriptedEngine(tokenizer, policy_replies(fmt, task, action)), fmt, task, ContextActions(fallback=fallback))
    by = [r["by"] for r in traj.metadata["context_rewrites"]]
    assert "policy" in by and "harness" in by
    assert check_replay(traj, tokenizer, fmt) == []


class Halve:
    """A user's own manager, unregistered: drops the older half of the messages after the opening."""

    def maybe_rewrite(self, messages, prompt_len):
        if len(messages) < 6:
            return None
        keep = [m for m in messages if m.role in ("system", "user")] + list(messages[-3:])
        return keep if keep != list(messages) else None


def test_an_unregistered_manager_records_its_result_and_replays(fmt, tokenizer, task):
    replies = [body(fmt, r) for r in ArithmeticEnv().gold_solution(task)]
    traj = run(ScriptedEngine(tokenizer, replies), fmt, task, Halve())
    assert traj.metadata["context_rewrites"] and "messages" in traj.metadata["context_rewrites"][0]
    assert check_replay(traj, tokenizer, fmt) == []


def test_bad_arguments_to_a_context_tool_are_an_observation(fmt, tokenizer, task):
    bad = ToolCall(name="context_keep_last_turns", arguments={})  # `turns` is required
    traj = run(ScriptedEngine(tokenizer, policy_replies(fmt, task, bad)), fmt, task, ContextActions())
    assert traj.reward == 1.0 and traj.metadata["context_rewrites"] == []
    # the chat format's parser checks context tools' schemas like any tool's: a format error the model reads
    assert any("context_keep_last_turns" in e.message and "turns" in e.message for e in traj.errors)


def test_a_tampered_record_does_not_replay(fmt, tokenizer, task):
    action = ToolCall(name="context_drop_tool_outputs", arguments={"keep_last": 0})
    traj = run(ScriptedEngine(tokenizer, policy_replies(fmt, task, action)), fmt, task, ContextActions())
    traj.metadata["context_rewrites"][0]["arguments"] = {"keep_last": 5}  # would keep everything
    with pytest.raises(ReplayError, match="changes nothing"):
        replay_contexts(traj)
    traj.metadata["context_rewrites"][0].update(arguments={"keep_last": 0}, message=1)
    with pytest.raises(ReplayError, match="recorded after"):
        replay_contexts(traj)


# --- configuration ----------------------------------------------------------------------------


def test_context_config_builds_a_fresh_manager_per_episode():
    from forgerl.agent.context_config import ContextConfig
    from forgerl.rollout.episode import context_manager_for
    from forgerl.train.config import TrainConfig

    assert ContextConfig().build() is None
    fixed = ContextConfig(manager="fixed", function="drop_tool_outputs", trigger_tokens=100, arguments={"keep_last": 2}).build()
    assert isinstance(fixed, FixedContext) and fixed.op.arguments == {"keep_last": 2}
    actions = ContextConfig(manager="actions", actions=["summarize"], fallback=True).build()
    assert isinstance(actions, ContextActions) and [t.name for t in actions.tools()] == ["context_summarize"]
    assert actions.fallback is not None
    with pytest.raises(ValueError, match="unknown context function 'nope'; registered: drop_old_rounds, drop_tool_outputs"):
        ContextConfig(manager="fixed", function="nope")  # a pydantic ValidationError; TrainConfig's loader words it
    with pytest.raises(ValueError, match="do not fit drop_old_rounds"):
        ContextConfig(manager="fixed", arguments={"keep_last": 2})
    # arm (b) of the context-rot experiment: trained without, evaluated with a fixed manager
    config = TrainConfig.model_validate({"context": {"manager": "none"}, "eval": {"context": {"manager": "fixed"}}})
    assert context_manager_for(config, evaluation=False) is None
    assert isinstance(context_manager_for(config, evaluation=True), FixedContext)
    a, b = (context_manager_for(TrainConfig.model_validate({"context": {"manager": "actions"}}), evaluation=e)
            for e in (False, True))
    assert isinstance(a, ContextActions) and isinstance(b, ContextActions) and a is not b


def test_context_is_refused_for_a_family_that_runs_its_own_episodes():
    from forgerl.rollout.episode import check_episode_features
    from forgerl.train.config import TrainConfig

    config = TrainConfig.model_construct(**{**TrainConfig().__dict__, "env": "parallel-lookup"})
    config = config.model_copy(update={"context": config.context.model_copy(update={"manager": "fixed"})})
    with pytest.raises(ConfigError, match=r"\[context\]"):
        check_episode_features(config)
