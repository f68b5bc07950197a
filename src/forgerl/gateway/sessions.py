"""Gateway sessions: one black-box rollout = one session = one credential = one trajectory.

Why sessions hold *text* beside the token ids: a black-box agent sends the whole conversation back
on every call (OpenAI's API is stateless), so the gateway must find out which earlier call the new
request continues. It renders the request with the chat format (the text the model must see) and
checks whether that text starts with the text of an earlier call's prompt + completion. If it
does, the prompt given to the engine is that call's exact `prompt_ids + completion_ids` followed by
the encoded remainder (DESIGN contract 2: nothing sampled is decoded and re-encoded), and the call
extends that branch. If no earlier context is a prefix — the agent rewrote history, summarised,
dropped reasoning at a new user turn, or its client reformatted a tool call — the full render is
used and a new branch (root) starts; the trajectory records which (`metadata["gateway"]["calls"]`
and, as the white-box loop does, `metadata["new_roots"]`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from forgerl.types import LLMCall, Message, ToolSpec, Trajectory

if TYPE_CHECKING:
    from forgerl.engine.base import GenerationResult
    from forgerl.envs.base import Environment, Task

KEY_PREFIX = "fgw-"


def new_key() -> str:
    """A fresh bearer credential (256 random bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    """Credentials are looked up by digest so the registry never holds a usable key as a dict key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass
class Plan:
    """How one request's prompt is built: the ids the engine gets and which call they extend."""

    prompt_ids: list[int]
    text: str  # the full render's text (what the ids spell)
    parent: int | None  # index of the recorded call whose prompt + completion this prompt extends
    retokenized: bool  # True when the full render's ids differ from the spliced ids (drift avoided)
    restored: int = 0  # assistant messages whose dropped reasoning the gateway gave back


@dataclass
class _CallNote:
    context_text: str  # text of this call's prompt + completion
    branch: int
    children: int = 0


@dataclass
class Session:
    """A rollout session. `env` is None for recording-only sessions (reward given at the end)."""

    id: str
    key_digest: str
    expires_at: float
    trajectory: Trajectory
    env: Environment | None = None
    task: Task | None = None
    tools: list[ToolSpec] = field(default_factory=list)
    opening: list[Message] = field(default_factory=list)
    ended: bool = False
    notes: list[_CallNote] = field(default_factory=list)
    replies: dict[tuple[str, str], str] = field(default_factory=dict)  # reply fingerprint -> its reasoning
    branches: int = 0
    tool_turn: int = 0

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at

    def restore_reasoning(self, messages: list[Message]) -> int:
        """Give back the reasoning an agent's client dropped (many keep only `content` and
        `tool_calls`): an assistant message without reasoning whose content and tool calls are
        exactly a reply this session produced gets that reply's reasoning, so the render is what
        the chat format prescribes for the conversation the model really had. Returns how many."""
        restored = 0
        for i, m in enumerate(messages):
            if m.role == "assistant" and m.reasoning is None:
                reasoning = self.replies.get(_fingerprint(m))
                if reasoning is not None:
                    messages[i] = m.model_copy(update={"reasoning": reasoning})
                    restored += 1
        return restored

    def plan(self, text: str, full_ids: list[int], encode: Callable[[str], list[int]]) -> Plan:
        """Reconcile a rendered request with the session's earlier calls (newest first)."""
        for index in range(len(self.notes) - 1, -1, -1):
            prefix = self.notes[index].context_text
            if prefix and len(text) > len(prefix) and text.startswith(prefix):
                call = self.trajectory.calls[index]
                ids = [*call.prompt_ids, *call.completion_ids, *encode(text[len(prefix):])]
                return Plan(ids, text, index, retokenized=ids != full_ids)
        return Plan(list(full_ids), text, None, retokenized=False)

    def plan_ids(self, prompt_ids: list[int]) -> Plan:
        """Reconcile by token ids alone (a remote server rendered the prompt): the newest earlier
        call whose prompt + completion ids are a prefix of `prompt_ids` is the parent."""
        for index in range(len(self.trajectory.calls) - 1, -1, -1):
            call = self.trajectory.calls[index]
            n = len(call.prompt_ids) + len(call.completion_ids)
            if len(prompt_ids) > n and prompt_ids[: len(call.prompt_ids)] == call.prompt_ids \
                    and prompt_ids[len(call.prompt_ids) : n] == call.completion_ids:
                return Plan(list(prompt_ids), "", index, retokenized=False)
        return Plan(list(prompt_ids), "", None, retokenized=False)

    def record(self, plan: Plan, result: GenerationResult, completion_text: str,
               messages: list[Message], reply: Message | None, parse_error: str | None) -> int:
        """Append the call (ids and logprobs verbatim) and its branch bookkeeping; returns its index."""
        n = len(result.completion_ids)
        traj = self.trajectory
        traj.calls.append(LLMCall(
            prompt_ids=list(plan.prompt_ids), completion_ids=list(result.completion_ids),
            completion_logprobs=list(result.logprobs), loss_mask=[1] * n, policy_version=result.policy_version,
            finish_reason=result.finish_reason, cached_prompt_tokens=result.cached_tokens, timings=result.timings,
            parse_error=parse_error,
        ))
        index = len(traj.calls) - 1
        if plan.parent is None:
            reason = "first call" if index == 0 else "history rewritten: no earlier context is a prefix"
            branch = self._new_branch()
        elif self.notes[plan.parent].children == 0:
            reason, branch = "extends", self.notes[plan.parent].branch
        else:
            reason, branch = f"fork: call {plan.parent} was already extended", self._new_branch()
        if plan.parent is not None:
            self.notes[plan.parent].children += 1
        self.notes.append(_CallNote(plan.text + completion_text, branch))
        if reason != "extends":
            traj.metadata.setdefault("new_roots", []).append(index)
        traj.metadata.setdefault("gateway", {}).setdefault("calls", []).append(
            {"call": index, "branch": branch, "parent": plan.parent, "reason": reason, "retokenized": plan.retokenized,
             "restored_reasoning": plan.restored})
        if reply is not None:
            traj.messages = [*messages, reply]
            if reply.reasoning is not None:
                self.replies[_fingerprint(reply)] = reply.reasoning
        return index

    def _new_branch(self) -> int:
        self.branches += 1
        return self.branches - 1

    def summary(self) -> dict[str, Any]:
        return {
            "session_id": self.id, "task_id": self.trajectory.task_id, "calls": len(self.trajectory.calls),
            "branches": self.branches, "ended": self.ended, "expires_at": self.expires_at,
        }


def _fingerprint(message: Message) -> tuple[str, str]:
    """What identifies an assistant reply when it comes back: its content and its calls (ids are
    left out: some clients rewrite them)."""
    calls = json.dumps([[c.name, c.arguments] for c in message.tool_calls], sort_keys=True, default=str)
    return message.content.strip(), calls
