"""The environment protocol: tools the agent may call, the task's opening messages, and a verifier.

Kept deliberately small: an environment is per episode (made by `make_env`, then `reset` with one
task), executes tool calls asynchronously (a later sandbox backend runs them in a container, so the
interface is async from the start) and scores the finished trajectory. Tools and verifier are part
of the environment, as in Forge (M2_NOTES §4): the agent loop knows nothing about a task family.

Every family registers a task generator and an environment class by name, and ships a gold
solution path (`gold_solution`) so a test can show the gold scores 1.0 and a no-op scores 0
(DESIGN.md contract 5). `run_gold` plays that path without any model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from forgerl.types import Message, ToolCall, ToolSpec, Trajectory


class Task(BaseModel):
    """One problem instance. `answer` is the gold answer the verifier compares against."""

    model_config = ConfigDict(extra="forbid")

    id: str
    family: str
    prompt: str
    data: dict[str, Any] = Field(default_factory=dict)
    answer: Any = None


class RewardResult(BaseModel):
    """A verifier's verdict: the scalar reward, its named parts, and what it was based on."""

    model_config = ConfigDict(extra="forbid")

    score: float
    breakdown: dict[str, float] = Field(default_factory=dict)
    evidence: dict[str, Any] = Field(default_factory=dict)


class Environment(ABC):
    """Workspace + tools + verifier for one episode.

    Tool failures the agent should see are raised as `forgerl.errors.ToolError` from `execute`;
    the agent loop turns them (and any other exception) into observations.
    """

    family: ClassVar[str]

    @property
    @abstractmethod
    def done(self) -> bool:
        """True once the episode is over from the environment's side (e.g. an answer was submitted)."""

    @abstractmethod
    def tools(self) -> list[ToolSpec]:
        """The tools the agent sees, with JSON schemas of their parameters."""

    @abstractmethod
    def reset(self, task: Task) -> list[Message]:
        """Start an episode on `task`; returns the opening messages (system + user)."""

    @abstractmethod
    async def execute(self, call: ToolCall) -> str:
        """Run one tool call and return the observation text; raise ToolError on tool failure."""

    @abstractmethod
    def reward(self, trajectory: Trajectory) -> RewardResult:
        """Score the finished episode (environment state + the trajectory's process record)."""

    @abstractmethod
    def gold_solution(self, task: Task) -> list[list[ToolCall]]:
        """A scripted path that solves `task`: rounds of tool calls, each round run in parallel."""


@dataclass(frozen=True)
class Family:
    """A task family: how to draw a task and how to build its environment, both from a seed."""

    name: str
    make_env: Callable[[int], Environment]
    sample_task: Callable[[int], Task]


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    _FAMILIES[family.name] = family
    return family


def _family(name: str) -> Family:
    from forgerl.envs import arithmetic  # noqa: F401  (registers the built-in families)

    try:
        return _FAMILIES[name]
    except KeyError:
        known = ", ".join(sorted(_FAMILIES))
        raise KeyError(f"unknown task family {name!r}; registered families: {known}") from None


def make_env(name: str, seed: int = 0) -> Environment:
    return _family(name).make_env(seed)


def sample_task(name: str, seed: int = 0) -> Task:
    return _family(name).sample_task(seed)


def list_families() -> list[str]:
    from forgerl.envs import arithmetic  # noqa: F401

    return sorted(_FAMILIES)


async def run_gold(env: Environment, task: Task) -> tuple[Trajectory, RewardResult]:
    """Play the family's gold path without a model (contract 5): reset, run each round of calls,
    record the messages, then score. A verifier that does not give this 1.0 is broken."""
    tools = env.tools()
    messages = env.reset(task)
    for round_ in env.gold_solution(task):
        messages.append(Message(role="assistant", tool_calls=round_))
        for call in round_:
            result = await env.execute(call)
            messages.append(Message(role="tool", content=result, tool_call_id=call.id, name=call.name))
        if env.done:
            break
    trajectory = Trajectory(task_id=task.id, messages=messages, tools=tools)
    result = env.reward(trajectory)
    trajectory.reward, trajectory.reward_breakdown = result.score, result.breakdown
    return trajectory, result
