"""Parallel multi-agent rollouts: a coordinator spawns copies of the policy as sub-agents.

One episode, several agents: the coordinator calls `delegate(questions=[...])`; every question
becomes a sub-agent — the same policy, its own fresh context, its own tools and turn budget — and
all of them run concurrently on the engine; their answers come back as the tool's observation.
Every LLM call is recorded with exact ids in its agent's Trajectory (`agent_id` "coordinator",
"sub-0", "sub-1", ...), and all of them share the episode's `group_id` and `episode_id`.

Credit (`CreditConfig`): the coordinator gets its own reward (outcome + process signals); each
sub-agent gets `shared x episode outcome + (1 - shared) x its own verified answer`, so a sub-agent
that found the right number is credited even when the coordinator then failed, and vice versa.

The example family, `parallel-lookup` (warehouse inventory): the total weight of K items is asked;
an item's weight takes two dependent look-ups (`find_item` -> shelf, `read_shelf` -> weight). The
coordinator may only make `COORDINATOR_TURNS` = 2 LLM calls, so even with parallel tool calls it
cannot finish alone (find, read, submit = 3); delegating (1) and submitting the sum (2) fits.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from forgerl.agent.loop import run_episode
from forgerl.envs.base import EpisodeLimits, Family, Task, register_family, run_gold, submit_nothing
from forgerl.envs.numeric import NumericAnswerEnv
from forgerl.envs.rewards import Verdict
from forgerl.errors import ToolError
from forgerl.types import Message, ToolCall, ToolSpec, Trajectory

FAMILY = "parallel-lookup"
COORDINATOR_TURNS = 2
SUBAGENT_TURNS = 4
MAX_SUBAGENTS = 8
MAX_QUESTION_CHARS = 300
ITEMS = ("bolt", "gear", "valve", "spring", "lever", "hinge", "pulley", "rivet", "washer", "bracket")

COORDINATOR_PROMPT = (
    "You coordinate a team. You may make at most 2 replies. Each item's weight needs two dependent "
    "look-ups (find_item gives a shelf, read_shelf gives the weight), which does not fit into 2 "
    "replies. Use delegate to ask one sub-agent per item in parallel, then submit_answer with the sum."
)
SUBAGENT_PROMPT = (
    "You answer one question about the warehouse. Call find_item to get the item's shelf, then "
    "read_shelf for its weight, then submit_answer with the weight in kg."
)

FIND_ITEM = ToolSpec(name="find_item", description="The shelf an item is stored on.", parameters={
    "type": "object", "properties": {"item": {"type": "string"}}, "required": ["item"]})
READ_SHELF = ToolSpec(name="read_shelf", description="The weight (kg) of what a shelf holds.", parameters={
    "type": "object", "properties": {"shelf": {"type": "string"}}, "required": ["shelf"]})
SUBMIT = ToolSpec(name="submit_answer", description="Submit the final number; ends your episode.", parameters={
    "type": "object", "properties": {"answer": {"type": "number"}}, "required": ["answer"]})
DELEGATE = ToolSpec(
    name="delegate",
    description=f"Run one sub-agent per question, in parallel (at most {MAX_SUBAGENTS}); returns their answers.",
    parameters={"type": "object", "properties": {"questions": {"type": "array", "items": {"type": "string"}}},
                "required": ["questions"]})


class CreditConfig(BaseModel):
    """How an episode's reward is shared among its agents."""

    model_config = ConfigDict(extra="forbid")

    shared: float = Field(0.5, ge=0, le=1)
    """Share of a sub-agent's reward that is the episode outcome (the rest: its own verified answer)."""


# -- the task ---------------------------------------------------------------------------------
def generate(seed: int, difficulty: int = 1) -> Task:
    rng = random.Random(seed)
    items = rng.sample(ITEMS, 2 + difficulty)
    shelves = {item: f"S-{rng.randrange(100, 1000)}" for item in items}
    while len(set(shelves.values())) < len(items):
        shelves = {item: f"S-{rng.randrange(100, 1000)}" for item in items}
    weights = {item: rng.randrange(1, 60) for item in items}
    prompt = f"What is the total weight in kg of the {', '.join(items[:-1])} and {items[-1]}?"
    return Task(id=f"{FAMILY}-{seed}-d{difficulty}", family=FAMILY, prompt=prompt, difficulty=difficulty,
                data={"items": items, "shelves": shelves, "weights": weights},
                answer=sum(weights.values()), verifier={"type": "exact_number"})


class _Warehouse:
    """The look-up tools, shared by the coordinator and its sub-agents."""

    task: Task | None

    def _lookup(self, call: ToolCall) -> str:
        assert self.task is not None
        data = self.task.data
        if call.name == "find_item":
            item = str(call.arguments.get("item", "")).strip().lower()
            if item not in data["shelves"]:
                raise ToolError(f"no item named {item[:40]!r} in this warehouse")
            return f"The {item} is on shelf {data['shelves'][item]}."
        if call.name == "read_shelf":
            shelf = str(call.arguments.get("shelf", "")).strip().upper()
            for item, s in data["shelves"].items():
                if s == shelf:
                    return f"Shelf {shelf} holds items weighing {data['weights'][item]} kg."
            raise ToolError(f"no shelf {shelf[:20]!r}")
        raise ToolError(f"unknown tool {call.name!r}")


class SubAgentEnv(_Warehouse, NumericAnswerEnv):
    """One sub-agent's episode: answer one question. Its gold is the weight of the one item the
    question names (a question naming none, or several, has no gold: outcome 0)."""

    family = FAMILY + "/sub"

    def tools(self) -> list[ToolSpec]:
        return [FIND_ITEM, READ_SHELF, SUBMIT]

    def reset(self, task: Task) -> list[Message]:
        self._start(task)
        return [Message(role="system", content=SUBAGENT_PROMPT), Message(role="user", content=task.prompt)]

    async def execute(self, call: ToolCall) -> str:
        if call.name == "submit_answer":
            return self._submit(call.arguments.get("answer"))
        return self._lookup(call)

    def verify(self, trajectory: Trajectory) -> Verdict:
        if self.task is None or self.task.answer is None:
            return Verdict(outcome=0.0, evidence={"why": "the question names no single item"})
        return super().verify(trajectory)

    def gold_solution(self, task: Task) -> list[list[ToolCall]]:
        item = task.data.get("item")
        if item is None:
            return []
        shelf = task.data["shelves"][item]
        return [[ToolCall(name="find_item", arguments={"item": item})],
                [ToolCall(name="read_shelf", arguments={"shelf": shelf})],
                [ToolCall(name="submit_answer", arguments={"answer": task.data["weights"][item]})]]

    @property
    def submitted(self) -> Any:
        return self._submitted


def subtask(parent: Task, question: str, index: int) -> Task:
    """The sub-agent's task: the question verbatim (untrusted model text, bounded in size)."""
    named = [i for i in parent.data["items"] if re.search(rf"\b{re.escape(i)}\b", question.lower())]
    item = named[0] if len(named) == 1 else None
    return Task(id=f"{parent.id}/sub-{index}", family=SubAgentEnv.family, prompt=question,
                data={**parent.data, "item": item}, answer=parent.data["weights"][item] if item else None,
                verifier={"type": "exact_number"})


SubAgentRunner = Callable[[Task, int], Awaitable[Trajectory]]


class CoordinatorEnv(_Warehouse, NumericAnswerEnv):
    """The coordinator's episode. `runner(subtask, index)` runs a sub-agent and returns its
    trajectory; `run_multiagent_episode` sets it to the policy, the default plays the sub-agent's
    gold path (what `run_gold` uses, with no model)."""

    family = FAMILY
    tools_on_caller_loop = True  # `delegate` runs sub-agents on the caller's engine

    def __init__(self, seed: int = 0, runner: SubAgentRunner | None = None) -> None:
        super().__init__(seed)
        self.runner: SubAgentRunner = runner or _gold_subagent
        self.subagents: list[Trajectory] = []

    def tools(self) -> list[ToolSpec]:
        return [DELEGATE, FIND_ITEM, READ_SHELF, SUBMIT]

    def reset(self, task: Task) -> list[Message]:
        self._start(task)
        self.subagents = []
        return [Message(role="system", content=COORDINATOR_PROMPT), Message(role="user", content=task.prompt)]

    async def execute(self, call: ToolCall) -> str:
        if call.name == "submit_answer":
            return self._submit(call.arguments.get("answer"))
        if call.name == "delegate":
            return await self._delegate(call.arguments.get("questions"))
        return self._lookup(call)

    async def _delegate(self, questions: Any) -> str:
        assert self.task is not None
        if not isinstance(questions, list) or not questions or not all(isinstance(q, str) and q.strip() for q in questions):
            raise ToolError("delegate needs 'questions': a non-empty list of non-empty strings")
        if len(questions) > MAX_SUBAGENTS:
            raise ToolError(f"at most {MAX_SUBAGENTS} sub-agents per call, got {len(questions)}")
        start = len(self.subagents)
        tasks = [subtask(self.task, q[:MAX_QUESTION_CHARS], start + k) for k, q in enumerate(questions)]
        done = await asyncio.gather(*(self.runner(t, start + k) for k, t in enumerate(tasks)))
        lines = []
        for k, traj in enumerate(done):
            traj.agent_id = f"sub-{start + k}"
            self.subagents.append(traj)
            answer = traj.metadata.get("submitted")
            lines.append(f"sub-agent {start + k}: " + ("no answer" if answer is None else f"answer {answer}"))
        return "\n".join(lines)

    def gold_solution(self, task: Task) -> list[list[ToolCall]]:
        questions = [f"How much does the {item} weigh?" for item in task.data["items"]]
        return [[ToolCall(name="delegate", arguments={"questions": questions})],
                [ToolCall(name="submit_answer", arguments={"answer": task.answer})]]


async def _gold_subagent(task: Task, index: int) -> Trajectory:
    """A model-free sub-agent that plays the gold path (for `run_gold` and tests)."""

    env = SubAgentEnv()
    traj, _ = await run_gold(env, task)
    traj.metadata["submitted"] = env.submitted
    return traj


async def _training_episode(engine: Any, chat_format: Any, task: Task, *, sampling: Any, limits: EpisodeLimits,
                            group_id: str | None) -> list[Trajectory]:
    """The family's episode runner (Family.episode_runner): the coordinator with policy sub-agents.
    The turn budgets are the family's own (they define the task), the context is the run's."""
    return await run_multiagent_episode(engine, chat_format, task, sampling=sampling,
                                        max_total_tokens=limits.max_total_tokens, group_id=group_id)


register_family(Family(
    name=FAMILY, make_env=CoordinatorEnv, sample_task=generate, difficulties=(1, 2, 3), generate=generate,
    noop=submit_nothing("submit_answer", answer=""), episode_runner=_training_episode,
    description="Parallel sub-agents: sum K item weights, each needing two dependent look-ups, in 2 coordinator turns.",
))


# -- running an episode with the policy --------------------------------------------------------
async def run_multiagent_episode(engine: Any, chat_format: Any, task: Task, *, sampling: Any,
                                 credit: CreditConfig | None = None, max_total_tokens: int = 2048,
                                 coordinator_turns: int = COORDINATOR_TURNS,
                                 subagent_turns: int = SUBAGENT_TURNS, group_id: str | None = None) -> list[Trajectory]:
    """One episode: [coordinator, sub-0, sub-1, ...], every call recorded, credit assigned; all
    of them carry `group_id`."""
    import dataclasses

    credit = credit or CreditConfig()
    episode = Trajectory(agent_id="coordinator", group_id=group_id)

    async def subagent(sub: Task, index: int) -> Trajectory:
        env = SubAgentEnv()
        params = sampling if sampling.seed is None else dataclasses.replace(sampling, seed=sampling.seed + 7919 * (index + 1))
        traj = await run_episode(engine, chat_format, env, sub, sampling=params, max_turns=subagent_turns,
                                 max_total_tokens=max_total_tokens, trajectory=Trajectory(agent_id=f"sub-{index}"))
        traj.metadata["submitted"] = env.submitted
        return traj

    env = CoordinatorEnv(runner=subagent)
    main = await run_episode(engine, chat_format, env, task, sampling=sampling, max_turns=coordinator_turns,
                             max_total_tokens=max_total_tokens, trajectory=episode)
    return assign_credit(main, env.subagents, credit)


def assign_credit(main: Trajectory, subs: list[Trajectory], credit: CreditConfig) -> list[Trajectory]:
    """Tie the agents into one episode and set each sub-agent's reward (see the module docstring).
    Failed (infrastructure) trajectories keep reward None: they stay out of the loss."""
    outcome = main.reward_breakdown.get("outcome", 0.0) if main.reward is not None else None
    for traj in [main, *subs]:
        traj.group_id = main.group_id
        traj.metadata.update(episode_id=main.id, agents=1 + len(subs))
    for sub in subs:
        own = sub.reward_breakdown.get("outcome")
        if sub.reward is None or own is None or outcome is None:
            continue
        sub.reward_breakdown.update(own_outcome=own, episode_outcome=outcome, credit_shared=credit.shared)
        sub.reward = credit.shared * outcome + (1 - credit.shared) * sub.reward
    return [main, *subs]


def episode_groups(episodes: list[list[Trajectory]]) -> list[list[Trajectory]]:
    """Advantage groups for G episodes of one task: the coordinators together, the sub-agents
    together (agents in different roles are not compared with each other)."""
    coordinators = [e[0] for e in episodes]
    subs = [t for e in episodes for t in e[1:]]
    return [g for g in (coordinators, subs) if g]


__all__ = ["CoordinatorEnv", "CreditConfig", "SubAgentEnv", "assign_credit", "episode_groups", "generate",
           "run_multiagent_episode"]

