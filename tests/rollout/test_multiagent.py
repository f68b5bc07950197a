"""Parallel multi-agent episodes with a scripted policy: sub-agents run concurrently with their own
contexts, every call is recorded under its agent id in one episode, and credit is assigned."""

from __future__ import annotations

import asyncio
import re

import pytest

from forgerl.chat import get_format
from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.base import run_gold
from forgerl.errors import ToolError
from forgerl.rollout.multiagent import (
    COORDINATOR_PROMPT,
    SUBAGENT_PROMPT,
    CoordinatorEnv,
    CreditConfig,
    episode_groups,
    generate,
    run_multiagent_episode,
)
from forgerl.types import Message, ToolCall, Trajectory, TrajectoryStatus

FMT = get_format("minimax_m2")


def _reply(*calls: ToolCall) -> str:
    return FMT.render_assistant_body(Message(role="assistant", reasoning="plan", tool_calls=list(calls)))


def scripted_policy(task, *, wrong_item: str | None = None, solo: bool = False):
    """Plays the coordinator and the sub-agents from what each one's own prompt shows."""

    def reply(prompt: str) -> str:
        if SUBAGENT_PROMPT in prompt:
            if m := re.search(r"weighing (\d+) kg", prompt):
                item = re.search(r"does the (\w+) weigh", prompt).group(1)
                value = int(m.group(1)) + (1 if item == wrong_item else 0)
                return _reply(ToolCall(name="submit_answer", arguments={"answer": value}))
            if m := re.search(r"is on shelf (S-\d+)", prompt):
                return _reply(ToolCall(name="read_shelf", arguments={"shelf": m.group(1)}))
            item = re.search(r"does the (\w+) weigh", prompt).group(1)
            return _reply(ToolCall(name="find_item", arguments={"item": item}))
        assert COORDINATOR_PROMPT in prompt
        if solo:  # tries alone: parallel find_item calls, then runs out of turns
            return _reply(*[ToolCall(name="find_item", arguments={"item": i}) for i in task.data["items"]])
        answers = [int(a) for a in re.findall(r"sub-agent \d+: answer (\d+)", prompt)]
        if answers:
            return _reply(ToolCall(name="submit_answer", arguments={"answer": sum(answers)}))
        questions = [f"How much does the {i} weigh?" for i in task.data["items"]]
        return _reply(ToolCall(name="delegate", arguments={"questions": questions}))

    return reply


def _episode(tokenizer, task, **kwargs):
    engine = ScriptedEngine(tokenizer, [scripted_policy(task, **kwargs)], cycle=True, delay_s=0.0005)
    trajs = asyncio.run(run_multiagent_episode(engine, FMT, task, sampling=SamplingParams(max_tokens=400),
                                               credit=CreditConfig(shared=0.5), max_total_tokens=6000))
    return engine, trajs


@pytest.fixture(scope="module")
def tok():
    from forgerl.model.tokenizer import load_default_tokenizer, prepare_tokenizer

    return prepare_tokenizer(load_default_tokenizer(), FMT)


def test_gold_path_scores_one_and_doing_nothing_scores_zero():
    task = generate(5, difficulty=2)
    traj, result = asyncio.run(run_gold(CoordinatorEnv(), task))
    assert result.score == 1.0 and traj.messages[3].content.count("answer") == 4
    env = CoordinatorEnv()
    env.reset(task)
    assert env.reward(Trajectory()).score == 0.0


def test_subagents_run_in_parallel_and_every_call_is_recorded(tok):
    task = generate(1, difficulty=2)  # 4 items
    engine, trajs = _episode(tok, task)
    main, subs = trajs[0], trajs[1:]
    assert main.status == TrajectoryStatus.COMPLETED and main.reward == 1.0, main.failure
    assert [t.agent_id for t in trajs] == ["coordinator", "sub-0", "sub-1", "sub-2", "sub-3"]
    assert len(main.calls) == 2 and all(len(s.calls) == 3 for s in subs)
    assert {t.metadata["episode_id"] for t in trajs} == {main.id}
    assert all(s.reward == 1.0 and s.reward_breakdown["own_outcome"] == 1.0 for s in subs)
    # each agent has its own context: a sub-agent's prompts never contain the coordinator's
    assert all(COORDINATOR_PROMPT not in tok.decode(c.prompt_ids) for s in subs for c in s.calls)
    # concurrency: after the delegate call, all four sub-agents sent their first prompt before any second one
    after = engine.prompts[1:5]
    assert all("is on shelf" not in tok.decode(p) and SUBAGENT_PROMPT in tok.decode(p) for p in after)
    recorded = sorted(map(tuple, [c.prompt_ids for t in trajs for c in t.calls]))
    assert recorded == sorted(map(tuple, engine.prompts))  # every engine call is in the episode


def test_credit_separates_the_shared_outcome_from_each_agents_own_answer(tok):
    task = generate(2, difficulty=1)
    wrong = task.data["items"][0]
    _, trajs = _episode(tok, task, wrong_item=wrong)
    main, subs = trajs[0], trajs[1:]
    assert main.reward == 0.0  # the sum is off by one
    rewards = {re.search(r"does the (\w+) weigh", s.messages[1].content).group(1): s.reward for s in subs}
    assert rewards[wrong] == 0.0
    assert all(r == 0.5 for item, r in rewards.items() if item != wrong)  # own answer right, episode wrong
    groups = episode_groups([trajs, trajs])
    assert [len(g) for g in groups] == [2, 2 * len(subs)]


def test_the_coordinator_cannot_finish_alone_within_its_turn_budget(tok):
    task = generate(3, difficulty=1)
    _, trajs = _episode(tok, task, solo=True)
    assert len(trajs) == 1 and trajs[0].status == TrajectoryStatus.TRUNCATED and trajs[0].reward == 0.0


def test_bad_delegate_arguments_are_tool_errors_not_crashes():
    task = generate(4)
    env = CoordinatorEnv()
    env.reset(task)
    for bad in (None, [], [""], ["q"] * 9, "one string"):
        with pytest.raises(ToolError):
            asyncio.run(env.execute(ToolCall(name="delegate", arguments={"questions": bad})))
