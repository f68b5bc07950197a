"""Rebuilding every training state of a recorded episode from its messages and rewrite record.

Forge registers the context-management function so that each state s_t an action was sampled in
can be rebuilt exactly (M2_NOTES §4). Here that is a check anyone can run on a stored trajectory:
`replay_prompts` renders the opening messages, extends each prompt by the recorded completion and the
rendered observations exactly as the loop did, and at every recorded rewrite re-applies the
registered function (or, for a user's unregistered manager, takes the rewritten messages recorded
with it) and renders the new root. `check_replay` compares the result with the recorded prompt ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from forgerl.agent.context import ContextOp
from forgerl.chat.base import ChatFormat, encode_segments
from forgerl.types import Message, Trajectory


class ReplayError(ValueError):
    """The record does not describe the episode (a malformed or inconsistent rewrite record)."""


def _turns(traj: Trajectory) -> list[tuple[Message, list[Message]]]:
    """(assistant reply, its observations) per LLM call, in order."""
    opening = int(traj.metadata.get("opening_messages", 0))
    turns: list[tuple[Message, list[Message]]] = []
    for message in traj.messages[opening:]:
        if message.role == "assistant":
            turns.append((message, []))
        elif turns:
            turns[-1][1].append(message)
        else:
            raise ReplayError(f"a {message.role} message follows the opening messages before any reply")
    if len(turns) != len(traj.calls):
        raise ReplayError(f"{len(turns)} assistant replies for {len(traj.calls)} LLM calls")
    return turns


def _rewrite(record: dict[str, Any], context: list[Message]) -> list[Message]:
    if "messages" in record:  # an unregistered manager: its result was recorded
        return [Message.model_validate(m) for m in record["messages"]]
    rewritten = ContextOp(record["function"], dict(record.get("arguments", {}))).apply(context)
    if rewritten is None:
        raise ReplayError(f"rewrite at call {record['call']}: {record['function']} changes nothing on replay")
    return rewritten


def replay_contexts(traj: Trajectory) -> dict[int, list[Message]]:
    """{call index: the messages its prompt was rendered from} for call 0 and every new root."""
    opening = int(traj.metadata.get("opening_messages", 0))
    records = {int(r["call"]): r for r in traj.metadata.get("context_rewrites", [])}
    context = list(traj.messages[:opening])
    roots = {0: list(context)}
    seen = opening
    for k, (reply, observations) in enumerate(_turns(traj)):
        context.extend([reply, *observations])
        seen += 1 + len(observations)
        record = records.get(k + 1)
        if record is not None:
            if int(record["message"]) != seen:
                raise ReplayError(f"rewrite at call {k + 1} was recorded after {record['message']} messages, replay has {seen}")
            context = _rewrite(record, context)
            roots[k + 1] = list(context)
    return roots


def replay_prompts(traj: Trajectory, tokenizer: Any, chat_format: ChatFormat) -> list[list[int]]:
    """The prompt ids of every call, rebuilt from the record (the loop's rule: a root is rendered
    fresh; otherwise previous prompt + completion ids + rendered observations)."""
    roots = replay_contexts(traj)
    turns = _turns(traj)
    prompts: list[list[int]] = []
    for k in range(len(traj.calls)):
        if k in roots:
            rendered = chat_format.render(roots[k], traj.tools, add_generation_prompt=True)
            prompts.append(encode_segments(tokenizer, rendered).ids)
            continue
        previous = traj.calls[k - 1]
        continuation = chat_format.render_continuation(turns[k - 1][1], traj.tools,
                                                       completion_closed=previous.finish_reason == "stop")
        prompts.append([*prompts[-1], *previous.completion_ids, *encode_segments(tokenizer, continuation).ids])
    return prompts


def check_replay(traj: Trajectory, tokenizer: Any, chat_format: ChatFormat) -> list[int]:
    """Indices of calls whose recorded prompt differs from the replayed one (empty: exact)."""
    replayed = replay_prompts(traj, tokenizer, chat_format)
    return [k for k, (call, ids) in enumerate(zip(traj.calls, replayed, strict=True)) if call.prompt_ids != ids]


def root_calls(traj: Trajectory) -> Sequence[int]:
    """Calls that start a new root (0 and every rewrite), as recorded."""
    return [0, *traj.metadata.get("new_roots", [])]
