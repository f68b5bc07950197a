"""cowork-long (issue 24): cowork's tasks in a large mailbox of long mails, which overflows the context unless it is managed."""

from __future__ import annotations

import asyncio
import re

import pytest

from forgerl.agent.context import FixedContext
from forgerl.agent.loop import run_episode
from forgerl.agent.replay import check_replay
from forgerl.chat import get_format
from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.base import family_info, list_families, make_env, play_rounds, run_gold, sample_task
from forgerl.envs.cowork import generate_task as short_task
from forgerl.envs.cowork.generator import EVENT_TITLES, FIRST_NAMES, LAST_NAMES, VENDORS
from forgerl.envs.cowork.workplace import Workplace, WorkplaceState
from forgerl.envs.cowork_long import FAMILY, FILLER_MAILS, NOTICE, generate_task, gold_queries, large_mailbox
from forgerl.train.sft_context import played_cleanly
from forgerl.types import Message, ToolCall, TrajectoryStatus

CONTEXT = 4096  # cowork's opening and sheet alone do not leave a managed gold path room in 2,048 (module docstring)
TURN = 256
SEEDS = range(20)


def test_same_task_as_cowork_with_a_large_mailbox():
    task, short = generate_task(4, 3), short_task(4, 3)
    assert task.family == FAMILY and task.id == f"{FAMILY}-d3-4" and family_info(FAMILY).generate is generate_task
    assert (task.prompt, task.answer, task.verifier, task.gold) == (short.prompt, short.answer, short.verifier, short.gold)
    assert generate_task(4, 3) == task and large_mailbox(task) == large_mailbox(task)  # deterministic
    assert FAMILY in list_families() and sample_task(FAMILY, 4, difficulty=3) == task
    env = make_env(FAMILY)
    messages = env.reset(task)
    assert messages[0].content.endswith(NOTICE) and messages[1].content == short.prompt and env.task == task
    mails = env.workplace.state.mails
    assert len(mails) == len(short.data["workplace"]["mails"]) + FILLER_MAILS
    target = next(c.arguments["mail_id"] for r in task.gold for c in r if c.name == "read_mail")
    text = asyncio.run(env.execute(ToolCall(name="read_mail", arguments={"mail_id": target})))
    assert "--- earlier messages in this thread ---" in text and text.count(" wrote:\n") == task.data["quoted_messages"]


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_gold_scores_one_and_noop_zero(difficulty):
    for seed in range(4):  # both templates of difficulties 1 and 2
        task = generate_task(seed, difficulty)
        _, result = asyncio.run(run_gold(make_env(FAMILY), task))
        assert result.score == 1.0
        _, noop = asyncio.run(play_rounds(make_env(FAMILY), task, family_info(FAMILY).noop, refused_ok=True))
        assert noop.score == 0.0


def _hit_ids(state: WorkplaceState, query: str) -> list[str]:
    return [m.id for m in Workplace(state).search_mail(query)]


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_filler_never_changes_what_the_gold_path_finds_or_its_verdict(difficulty):
    names = [*FIRST_NAMES, *LAST_NAMES, *(v[0] for v in VENDORS), *EVENT_TITLES, "invoice", "timesheet"]
    for seed in SEEDS:
        task, short = generate_task(seed, difficulty), short_task(seed, difficulty)
        small, large = WorkplaceState.model_validate(short.data["workplace"]), large_mailbox(task)
        for query in gold_queries(task):
            assert _hit_ids(large, query) == _hit_ids(small, query), (seed, query)
        bodies = {m.id: m.body for m in small.mails}
        added = [m.body.removeprefix(bodies.get(m.id, "")) for m in large.mails]
        assert all(m.body.startswith(bodies[m.id]) for m in large.mails if m.id in bodies)
        for text in added:
            assert not re.search(r"\d", text) and not [n for n in names if n.lower() in text.lower()]
        _, result = asyncio.run(run_gold(make_env(FAMILY), task))
        _, plain = asyncio.run(run_gold(make_env("cowork"), short))
        assert result.score == plain.score == 1.0 and result.breakdown == plain.breakdown


def play(task, manager, fmt, tokenizer):
    """The gold rounds, each rendered as the policy would write it, through the real agent loop."""
    replies = [fmt.render_assistant_body(Message(role="assistant", tool_calls=r)) for r in task.gold]
    return asyncio.run(run_episode(ScriptedEngine(tokenizer, replies, max_context=CONTEXT), fmt, make_env(FAMILY), task,
                                   sampling=SamplingParams(max_tokens=TURN), max_turns=10, max_total_tokens=CONTEXT,
                                   context_manager=manager))


@pytest.mark.parametrize(("seed", "difficulty"), [(0, 1), (0, 2), (2, 2), (1, 3)])
def test_keeping_everything_truncates_and_managing_the_context_finishes(seed, difficulty, tokenizer):
    fmt = get_format("minimax_m2")
    task = generate_task(seed, difficulty)
    kept = play(task, None, fmt, tokenizer)
    assert kept.status == TrajectoryStatus.TRUNCATED and kept.reward == 0.0 and not played_cleanly(kept)
    for manager in (FixedContext("keep_last_turns", 1024, turns=1), FixedContext("drop_old_rounds", 1024, keep_rounds=1)):
        managed = play(task, manager, fmt, tokenizer)
        assert played_cleanly(managed) and managed.reward == 1.0
        assert managed.metadata["context_rewrites"] and check_replay(managed, tokenizer, fmt) == []
