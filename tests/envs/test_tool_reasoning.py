"""The tool-reasoning family: gold scores 1.0 and no-ops 0 at every difficulty on many seeds
(contract 5), the difficulty dial sets the number of calls, the tools refuse bad input with a
message that says what to do, and the scripted solver's thinking reacts to the real tool results."""

from __future__ import annotations

import asyncio
import re

import pytest

from forgerl.agent.loop import run_episode
from forgerl.chat import get_format
from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.base import make_env, run_gold, sample_task
from forgerl.envs.tool_reasoning import (
    DIFFICULTIES,
    GOLD_STYLE,
    ITEMS,
    PEOPLE,
    SolverStyle,
    ToolReasoningEnv,
    convert,
    generate_task,
    gold_messages,
    sample_style,
)
from forgerl.errors import ToolError, VerifierError
from forgerl.types import ToolCall, Trajectory, TrajectoryStatus

FAMILY = "tool-reasoning"
SEEDS = range(25)
CALLS = {1: (1, 2), 2: (3, 4), 3: (4, 6), 4: (6, 10), 5: (10, 15)}  # tool calls before the submit


def execute(env, name: str, **arguments) -> str:
    return asyncio.run(env.execute(ToolCall(name=name, arguments=arguments)))


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_gold_scores_one_and_noops_zero_on_many_seeds(difficulty):
    for seed in SEEDS:
        task = generate_task(seed, difficulty)
        trajectory, result = asyncio.run(run_gold(make_env(FAMILY, seed), task))
        assert result.score == 1.0, (task.id, result.evidence)
        assert result.evidence["verifier"]["submitted"] == task.answer and task.answer > 0
        env = make_env(FAMILY, seed)
        env.reset(task)
        assert env.reward(Trajectory(task_id=task.id)).score == 0.0  # nothing submitted
        with pytest.raises(ToolError, match="number"):
            execute(env, "submit_answer", answer="")
        assert env.reward(Trajectory(task_id=task.id)).score == 0.0  # an empty answer is refused


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_difficulty_sets_the_number_of_calls_and_independent_calls_share_a_round(difficulty):
    counts, widest = set(), 0
    for seed in SEEDS:
        task = generate_task(seed, difficulty)
        rounds = ToolReasoningEnv().gold_solution(task)
        assert rounds[-1] == [rounds[-1][0]] and rounds[-1][0].name == "submit_answer"
        calls = sum(len(r) for r in rounds) - 1
        low, high = CALLS[difficulty]
        assert low <= calls <= high, (task.id, calls)
        counts.add(calls)
        widest = max(widest, max(len(r) for r in rounds))
    if difficulty >= 2:
        assert widest >= 2  # parallel lookups
    if difficulty == 5:
        assert min(counts) >= 10


def test_wrong_answer_scores_zero_and_only_the_first_submission_counts():
    task = generate_task(3, 3)
    env = make_env(FAMILY)
    env.reset(task)
    execute(env, "submit_answer", answer=task.answer + 1)
    with pytest.raises(ToolError, match="already submitted"):
        execute(env, "submit_answer", answer=task.answer)
    result = env.reward(Trajectory())
    assert result.score == 0.0 and result.evidence["verifier"]["found"] == "mismatch"


def test_tasks_are_seeded_varied_and_small():
    assert generate_task(11, 4) == generate_task(11, 4)
    assert generate_task(11, 4) != generate_task(12, 4)
    tasks = [generate_task(s, d) for d in DIFFICULTIES for s in range(30)]
    kinds = {(t.data["question"]["kind"], t.data["question"]["table"], t.data["question"]["unit"]) for t in tasks}
    assert len(kinds) >= 8
    for task in tasks:
        assert len(task.prompt) < 100 and task.prompt.endswith("?")
        assert task.id == f"{FAMILY}-d{task.difficulty}-{task.id.rsplit('-', 1)[1]}"
        db = task.data["db"]
        assert all(1 <= v <= 9 for v in db["price"].values()) and all(1 <= v <= 5 for v in db["weight"].values())
        assert set(db["price"]) <= set(ITEMS) and set(db["basket"]) <= set(PEOPLE)
    levels = {sample_task(FAMILY, s).difficulty for s in range(40)}
    assert levels == set(DIFFICULTIES)
    with pytest.raises(ValueError, match="difficulty"):
        generate_task(0, 6)


def test_tools_answer_from_the_task_database_and_refuse_bad_input():
    task = generate_task(2, 4)
    db = task.data["db"]
    env = make_env(FAMILY)
    env.reset(task)
    person = task.data["question"]["people"][0]
    assert execute(env, "get_basket", person=person.upper()) == ", ".join(db["basket"][person])
    item = db["basket"][person][0]
    assert execute(env, "lookup", table="price", item=item) == str(db["price"][item])
    assert execute(env, "convert", value=3, from_unit="kg", to_unit="g") == "3000"
    assert execute(env, "convert", value=250, from_unit="cents", to_unit="dollars") == "2.5"
    assert execute(env, "calculator", expression="(1+2)*3") == "9"
    with pytest.raises(ToolError, match="no basket for 'zed'; people with baskets"):
        execute(env, "get_basket", person="zed")
    with pytest.raises(ToolError, match="no item 'durian' in table price; items:"):
        execute(env, "lookup", table="price", item="durian")
    with pytest.raises(ToolError, match="unknown table"):
        execute(env, "lookup", table="colour", item=item)
    with pytest.raises(ToolError, match="cannot convert mass"):
        execute(env, "convert", value=1, from_unit="kg", to_unit="cents")
    with pytest.raises(ToolError, match="finite number"):
        convert(float("nan"), "kg", "g")
    with pytest.raises(ToolError, match="non-empty string"):
        execute(env, "get_basket", person=7)


def test_task_tool_set_limits_the_tools():
    task = generate_task(0, 1).model_copy(update={"tools": ["lookup", "submit_answer"]})
    env = make_env(FAMILY)
    env.reset(task)
    assert [t.name for t in env.tools()] == ["lookup", "submit_answer"]
    with pytest.raises(ToolError, match="available: lookup, submit_answer"):
        execute(env, "calculator", expression="1+1")


def test_reset_refuses_a_task_of_another_family_and_reward_needs_a_task():
    with pytest.raises(ValueError, match="not a tool-reasoning task"):
        ToolReasoningEnv().reset(sample_task("arithmetic", 0))
    with pytest.raises(VerifierError, match="before reset"):
        ToolReasoningEnv().reward(Trajectory())


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_gold_messages_think_about_the_real_results(difficulty):
    for seed in range(6):
        task = generate_task(seed, difficulty)
        messages = gold_messages(task)
        assistants = [m for m in messages if m.role == "assistant"]
        rounds = ToolReasoningEnv().gold_solution(task)
        assert [[(c.name, c.arguments) for c in m.tool_calls] for m in assistants] == [
            [(c.name, c.arguments) for c in r] for r in rounds
        ]
        assert all(m.reasoning and m.reasoning.endswith(".") for m in assistants)
        assert assistants[-1].tool_calls[0].arguments["answer"] == task.answer
        assert f"I submit {task.answer}." in assistants[-1].reasoning
        tool_messages = [m for m in messages if m.role == "tool"]
        assert len(tool_messages) == sum(len(r) for r in rounds)
        assert not any(m.content.startswith("Error") for m in tool_messages)
        for call_message, next_message in zip(assistants, assistants[1:], strict=False):
            ids = {c.id for c in call_message.tool_calls}
            results = [m.content for m in messages if m.role == "tool" and m.tool_call_id in ids]
            for result in results:  # every result is mentioned in the next thinking
                for piece in re.split(r", ", result):
                    if not piece.startswith("Answer"):
                        assert piece in next_message.reasoning, (piece, next_message.reasoning)


def test_gold_messages_recover_from_an_injected_error():
    for seed in range(12):
        task = generate_task(seed, 3 + seed % 3)
        messages = gold_messages(task, inject_error=True, seed=seed)
        errors = [i for i, m in enumerate(messages) if m.role == "tool" and m.content.startswith("Error:")]
        assert len(errors) == 1 and "temporarily unavailable" in messages[errors[0]].content
        failed = messages[errors[0]]
        recovery = next(m for m in messages[errors[0]:] if m.role == "assistant")
        assert "failed" in recovery.reasoning and "again" in recovery.reasoning
        assert [(c.name, c.arguments) for c in recovery.tool_calls] == [
            (failed.name, next(c for m in messages for c in m.tool_calls if c.id == failed.tool_call_id).arguments)
        ]
        assert messages[-1].content == f"Answer {task.answer} submitted."
        assert len([m for m in messages if m.role == "assistant"]) == len(ToolReasoningEnv().gold_solution(task)) + 1


def test_gold_messages_replayed_through_the_agent_loop_score_one(tokenizer):
    fmt = get_format("minimax_m2")
    for seed, difficulty in [(0, 2), (1, 4), (2, 5)]:
        task = generate_task(seed, difficulty)
        messages = gold_messages(task, inject_error=True, seed=seed)
        replies = [fmt.render_assistant_body(m) for m in messages if m.role == "assistant"]
        traj = asyncio.run(run_episode(ScriptedEngine(tokenizer, replies), fmt, make_env(FAMILY), task,
                                       sampling=SamplingParams(max_tokens=600), max_turns=len(replies),
                                       max_total_tokens=8000))
        assert traj.status == TrajectoryStatus.COMPLETED and traj.reward == 1.0, traj.failure
        assert [m.reasoning for m in traj.messages if m.role == "assistant"] == [
            m.reasoning for m in messages if m.role == "assistant"
        ]
        # the injected error existed only in the SFT data; the live env answered every call
        assert [m.content for m in traj.messages if m.role == "tool"][-1] == f"Answer {task.answer} submitted."


STYLES = [SolverStyle(max_parallel=k, terse=t) for k in (None, 2, 1) for t in (False, True)]


@pytest.mark.parametrize("style", STYLES, ids=str)
def test_every_solver_style_solves_the_task_through_the_agent_loop(style, tokenizer):
    """SFT's varied styles are all correct paths: replayed through the real agent loop (with an
    injected error) they score 1.0, and no lookup round makes more lookups than the style allows."""
    fmt = get_format("minimax_m2")
    for seed, difficulty in [(0, 2), (1, 3), (2, 4), (3, 5)]:
        task = generate_task(seed, difficulty)
        messages = gold_messages(task, inject_error=True, seed=seed, style=style)
        lookups = [len(m.tool_calls) for m in messages if m.role == "assistant" and m.tool_calls[0].name == "lookup"]
        assert max(lookups) <= (style.max_parallel or 99)
        looked_up = [c.arguments["item"] for m in messages if m.role == "assistant" for c in m.tool_calls if c.name == "lookup"]
        gold = [c.arguments["item"] for r in ToolReasoningEnv().gold_solution(task) for c in r if c.name == "lookup"]
        assert sorted(set(looked_up)) == sorted(gold)  # same lookups (retries aside), differently grouped
        replies = [fmt.render_assistant_body(m) for m in messages if m.role == "assistant"]
        traj = asyncio.run(run_episode(ScriptedEngine(tokenizer, replies), fmt, make_env(FAMILY), task,
                                       sampling=SamplingParams(max_tokens=600), max_turns=len(replies),
                                       max_total_tokens=8000))
        assert traj.status == TrajectoryStatus.COMPLETED and traj.reward == 1.0, (style, traj.failure)


def test_sampled_styles_are_seeded_and_cover_every_style():
    assert [sample_style(s) for s in range(50)] == [sample_style(s) for s in range(50)]
    drawn = [sample_style(s) for s in range(600)]
    assert set(drawn) == set(STYLES)
    assert 0.35 < sum(d.max_parallel is None for d in drawn) / len(drawn) < 0.65  # half keep one parallel round
    task = generate_task(4, 3)
    assert [m.reasoning for m in ToolReasoningEnv().gold_messages(task, seed=4)] == [
        m.reasoning for m in gold_messages(task, seed=4, style=GOLD_STYLE)]
    varied = ToolReasoningEnv().gold_messages(task, seed=4, varied=True)
    styled = gold_messages(task, seed=4, style=sample_style(4))
    assert [m.reasoning for m in varied] == [m.reasoning for m in styled]
