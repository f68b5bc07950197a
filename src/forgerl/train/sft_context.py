"""SFT data in which the scripted solver manages its own context (issue 24, context management as an action).

A conversation whose context is rewritten is not one token sequence: every rewrite starts a new root
of the prefix tree (DESIGN contract 2), so it cannot be rendered whole the way `sft.py` renders gold
conversations. Here the family's scripted solver is played through the real agent loop instead: its
assistant messages are the replies of a `ScriptedEngine`, each turn after the first (except the
submitting one) also calls the context tool `context_<action>`, and the loop executes the tools,
applies and records the rewrites. The trajectory's recorded samples (`chain_samples`, one per root)
are the SFT examples — exactly the ids and masks RL would train on, and replayable
(`agent/replay.py`). Only trajectories the family's verifier passes are kept.

The solver's thinking notes every value it read before the next turn (tool-reasoning's does), so
dropping what it has read loses nothing it needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from forgerl.agent.context import TOOL_PREFIX, ContextActions
from forgerl.agent.loop import run_episode
from forgerl.chat.base import ChatFormat
from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.base import Task, make_env
from forgerl.errors import ConfigError
from forgerl.train.sft_store import SFTExample
from forgerl.types import Message, ToolCall, Trajectory, TrajectoryStatus, chain_samples

ACTION_ARGUMENTS: dict[str, dict[str, Any]] = {
    "keep_last_turns": {"turns": 1}, "drop_old_rounds": {"keep_rounds": 1}, "drop_tool_outputs": {"keep_last": 0}}
"""What the solver passes to each context tool it can call: forget every result it has already read."""


def played_cleanly(traj: Trajectory) -> bool:
    """Completed, passed by the verifier, and every reply ended and parsed. A scripted engine goes on
    with its script after a reply cut by the token budget (the loop runs none of that reply's calls),
    so a pass alone does not prove the script was played as written."""
    return (traj.status == TrajectoryStatus.COMPLETED and traj.passed
            and all(c.finish_reason == "stop" and c.parse_error is None for c in traj.calls))


def managed_replies(fmt: ChatFormat, gold: list[Message], action: str) -> list[str]:
    """The gold conversation's assistant turns as the policy would write them, each turn between the
    first and the last also calling `context_<action>`."""
    if action not in ACTION_ARGUMENTS:
        raise ConfigError(f"the scripted solver cannot call context action {action!r}; it can call: "
                          f"{', '.join(sorted(ACTION_ARGUMENTS))}")
    turns = [m for m in gold if m.role == "assistant"]
    call = ToolCall(name=TOOL_PREFIX + action, arguments=dict(ACTION_ARGUMENTS[action]))
    return [fmt.render_assistant_body(m.model_copy(update={"tool_calls": [*m.tool_calls, call]})
                                      if 0 < i < len(turns) - 1 else m)
            for i, m in enumerate(turns)]


async def managed_gold_trajectory(family: str, task: Task, tokenizer: Any, fmt: ChatFormat, action: str, *,
                                  max_context: int, seed: int = 0, varied: bool = False) -> Trajectory:
    """The family's scripted solver on `task`, managing its context with `action`, played through
    the agent loop (scored by the family's verifier)."""
    env = make_env(family, seed)
    scripted = getattr(env, "gold_messages", None)
    if scripted is None:
        raise ConfigError(f"family {family!r} has no scripted conversation (gold_messages) to manage the context of")
    gold = list(scripted(task, seed=seed, varied=varied))
    replies = managed_replies(fmt, gold, action)
    engine = ScriptedEngine(tokenizer, replies, max_context=max_context, logprob=0.0)
    # no budget per turn beyond the context itself (the loop clips max_tokens to the room left)
    return await run_episode(engine, fmt, env, task, sampling=SamplingParams(max_tokens=max_context),
                             max_turns=len(replies), max_total_tokens=max_context,
                             context_manager=ContextActions([action]))


async def managed_examples(family: str, tasks: Iterable[tuple[int, Task]], tokenizer: Any, fmt: ChatFormat,
                           action: str, *, max_context: int, varied: bool = False) -> tuple[list[SFTExample], int]:
    """SFT examples (one per root) of the managed gold trajectories played cleanly, and how many
    trajectories were rejected (`played_cleanly` false: truncated, failed, or a reply cut short)."""
    examples: list[SFTExample] = []
    rejected = 0
    for seed, task in tasks:
        traj = await managed_gold_trajectory(family, task, tokenizer, fmt, action, max_context=max_context, seed=seed,
                                             varied=varied)
        if not played_cleanly(traj):
            rejected += 1
            continue
        rewrites = len(traj.metadata.get("context_rewrites", []))
        source = {"source": "scripted-context", "family": family, "task": task.id, "action": action,
                  "rewrites": rewrites, "sections": [], "dropped": [], "distill": "off"}
        for root, sample in enumerate(chain_samples(traj, [0.0] * len(traj.calls))):
            examples.append(SFTExample(sample.input_ids, sample.loss_mask, {**source, "root": root}))
    return examples, rejected
