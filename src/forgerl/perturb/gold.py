"""Perturbed SFT data: a family's scripted solver played through a perturbed environment.

MiniMax perturbs M2's data pipeline, not only its RL rollouts (M2_NOTES §5). An RL run cannot learn
robustness from perturbed episodes its policy fails every time (issue 7's first measurement: 0 of
32 under any single perturbation), so the policy first has to see correct work under perturbed
scaffolds. This module writes that work: the solver (`env.solver(task, seed=, varied=)`) thinks
and calls tools as usual, each call is shown under the episode's names and tool plan, runs through
the `PerturbedEnvironment` (rendered responses, injected failures, rate limits), and the solver
reads the environment's own output, so it never parses a perturbed rendering. Failed calls come
back to the solver as errors, and it retries them in its next turn with thinking that says so.

Held-out settings are never drawn (the spec's `allowed` lists), so SFT on these conversations
keeps the experiment's held-out scaffolds unseen.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from forgerl.envs.base import Observation, Task, make_env
from forgerl.errors import ToolError, VerifierError
from forgerl.perturb.apply import apply_perturbations
from forgerl.perturb.env import PerturbedEnvironment
from forgerl.perturb.spec import PerturbSpec
from forgerl.types import Message, ToolCall, ToolSpec, Trajectory

MAX_TURNS = 40
"""A solver that has not finished after this many turns is dropped (retries included)."""


@dataclass
class PerturbedConversation:
    messages: list[Message]
    tools: list[ToolSpec]
    task_id: str
    chat_format: str | None
    """The format the episode is rendered in; None = the run's own."""
    score: float
    """The family's reward on the perturbed environment the calls ran in."""
    record: dict[str, Any] = field(default_factory=dict)
    """The perturbation record (as a trajectory's `perturbations`): replayable."""


async def _run(env: PerturbedEnvironment, call: ToolCall) -> tuple[str, str, bool]:
    """(what the solver reads, what the conversation shows, whether the call failed)."""
    try:
        original, shown = await env.execute_traced(call)
    except ToolError as exc:
        return str(exc), f"Error: {exc}", True
    return original, shown, False


async def perturbed_gold_conversation(family: str, task: Task, spec: PerturbSpec, seed: int, *,
                                      varied: bool = False) -> PerturbedConversation:
    """The solver's conversation on `task` under the perturbations `spec` draws for `seed`. A solver
    that gives up (its calls kept failing) yields the conversation so far with score 0."""
    env = make_env(family, seed)
    solver_of = getattr(env, "solver", None)
    if solver_of is None:
        raise ValueError(f"family {family!r} has no scripted solver (`env.solver(task, seed=, varied=)`), so it "
                         "cannot make perturbed SFT data; use a family that has one, e.g. tool-reasoning")
    p = apply_perturbations(task, env, spec, seed)
    penv = p.env
    assert isinstance(penv, PerturbedEnvironment)
    messages = penv.reset(p.task)
    tools = penv.tools()
    solver = solver_of(task, seed=seed, varied=varied)
    step = next(solver)
    try:
        for _ in range(MAX_TURNS):
            plan = penv.plan()  # rebuilt only if the environment's tools changed
            shown = [plan.to_shown(call) for call in step.calls]
            results = await asyncio.gather(*(_run(penv, call) for call in shown))
            messages.append(Message(role="assistant", reasoning=step.reasoning, tool_calls=shown))
            messages += [Message(role="tool", content=text, tool_call_id=call.id, name=call.name)
                         for call, (_, text, _) in zip(shown, results, strict=True)]
            if penv.done:
                break
            step = solver.send([Observation(read, error=failed) for read, _, failed in results])
    except StopIteration:
        pass
    except VerifierError:  # the solver gave up (e.g. calls kept failing under a tight rate limit)
        return PerturbedConversation(messages, tools, task.id, p.chat_format, 0.0, p.record)
    finally:
        solver.close()
    trajectory = Trajectory(task_id=task.id, messages=messages, tools=tools)
    score = penv.reward(trajectory).score if penv.done else 0.0
    return PerturbedConversation(messages, tools, task.id, p.chat_format, score, p.record)
