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

from forgerl.agent.recording import llm_call
from forgerl.types import Message, ToolSpec, Trajectory

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
    input_key: str = ""  # history_key of the request's messages and tools (how later requests find this call)
    echoed: int = 0  # assistant messages replaced by the exact text the model sampled for them


@dataclass
class _CallNote:
    context_text: str  # text of this call's prompt + completion
    branch: int
    children: int = 0
    input_key: str = ""  # history_key of the messages and tools this call was sampled for
    reply: Message | None = None  # the reply as parsed (reasoning, content, typed calls with the ids returned)


@dataclass
class Reconciled:
    """A request's messages matched against the replies this session returned (`Session.reconcile`)."""

    messages: list[Message]  # with dropped reasoning restored and matched replies in their parsed form
    restored: int = 0
    matches: dict[int, int] = field(default_factory=dict)  # message index -> the call that returned it verbatim


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
    replies: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # reply fingerprint -> its reasonings
    branches: int = 0
    tool_turn: int = 0

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at

    def restore_reasoning(self, messages: list[Message], tools: list[ToolSpec] | tuple[()] = ()) -> int:
        """Give back the reasoning an agent's client dropped, in place (see `reconcile`). Returns how many."""
        reconciled = self.reconcile(messages, tools)
        messages[:] = reconciled.messages
        return reconciled.restored

    def reconcile(self, messages: list[Message], tools: list[ToolSpec] | tuple[()] = (), *,
                  restore: bool = True) -> Reconciled:
        """Match each assistant message to the reply this session returned at that place.

        Why by place: many clients keep only `content` and `tool_calls`, and two replies can agree
        on both while their reasoning differs (the same question asked twice); looked up by
        content, one would get the other's reasoning and the render would describe a conversation
        the model never had. A message matches call k when the messages before it are the ones call
        k was sampled for (`history_key`, with earlier matches already substituted) and its content
        and calls equal call k's reply as values (`57` for a sampled ` 57`, `0.5` for `0.50`). Among
        equal candidates the tool-call ids the gateway returned decide; still ambiguous, nothing is
        guessed. A message matched nowhere gets reasoning by content only when this session
        produced that content with a single reasoning. `restore=False` restores nothing (matches
        whose reasoning the client kept still count)."""
        out = Reconciled(messages=[])
        running = _HistoryHash(tools)
        for i, m in enumerate(messages):
            if m.role == "assistant":
                k = self._reply_at(running.key(), m)
                reply = self.notes[k].reply if k is not None else None
                if reply is not None and (m.reasoning is not None or restore):
                    if m.reasoning is None and reply.reasoning is not None:
                        out.restored += 1
                    m = _as_returned(m, reply)
                    out.matches[i] = k  # type: ignore[assignment]
                elif m.reasoning is None and restore:
                    reasonings = self.replies.get(_fingerprint(m), set())
                    if len(reasonings) == 1:
                        m = m.model_copy(update={"reasoning": next(iter(reasonings))})
                        out.restored += 1
            out.messages.append(m)
            running.add(m)
        return out

    def _reply_at(self, key: str, message: Message) -> int | None:
        """The call sampled for history `key` whose reply `message` is, when exactly one fits."""
        found = [k for k, note in enumerate(self.notes) if note.reply is not None and note.input_key == key
                 and _same_reply(note.reply, message)]
        if len(found) > 1 and message.tool_calls:
            ids = [c.id for c in message.tool_calls]
            found = [k for k in found if [c.id for c in self.notes[k].reply.tool_calls] == ids] or found  # type: ignore[union-attr]
        if len(found) > 1 and len({self.notes[k].context_text for k in found}) > 1:
            return None  # equal replies that were sampled differently: which one came back is unknown
        return found[-1] if found else None

    def echo_text(self, text: str, reconciled: Reconciled, render_text: Callable[[list[Message]], str],
                  end_of_message: str) -> tuple[str, int]:
        """`text` (the request's full render) with the newest matched reply rendered as the model
        sampled it: call k's prompt + completion text, then the rest. Why: an agent echoes parsed
        values (`57` for a sampled ` 57`, `0.5` for `0.50`), whose re-render differs from the
        sampled tokens; reusing the sample keeps the prompt an exact extension of call k (its ids
        are spliced in by `plan`). `render_text(messages)` renders without a generation prompt.
        Returns the text and 1 when the sample's text differs from the re-render (else 0)."""
        for i in sorted(reconciled.matches, reverse=True):
            note = self.notes[reconciled.matches[i]]
            upto = render_text(reconciled.messages[: i + 1])  # ... the reply as re-rendered, its end marker, a tail
            cut = upto.rfind(end_of_message)
            if cut < 0 or not text.startswith(upto) or not note.context_text.endswith(end_of_message):
                continue  # a render that drops this reply's reasoning, or a reply cut short: nothing to reuse
            spliced = note.context_text + upto[cut + len(end_of_message):] + text[len(upto):]
            return spliced, int(spliced != text)
        return text, 0

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
        traj = self.trajectory
        traj.calls.append(llm_call(plan.prompt_ids, result, parse_error=parse_error))  # as the agent loop records
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
        self.notes.append(_CallNote(plan.text + completion_text, branch, input_key=plan.input_key, reply=reply))
        if reason != "extends":
            traj.metadata.setdefault("new_roots", []).append(index)
        traj.metadata.setdefault("gateway", {}).setdefault("calls", []).append(
            {"call": index, "branch": branch, "parent": plan.parent, "reason": reason, "retokenized": plan.retokenized,
             "restored_reasoning": plan.restored, "echo_spliced": plan.echoed})
        if reply is not None:
            traj.messages = [*messages, reply]
            if reply.reasoning is not None:
                self.replies.setdefault(_fingerprint(reply), set()).add(reply.reasoning)
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


class _HistoryHash:
    """`history_key` built one message at a time (a request checks every prefix of its history)."""

    def __init__(self, tools: list[ToolSpec] | tuple[()] = ()) -> None:
        self._hash = hashlib.sha256(json.dumps([t.model_dump() for t in tools], sort_keys=True, default=str).encode())

    def add(self, m: Message) -> None:
        part = [m.role, m.content, m.reasoning, m.name, [[c.name, c.arguments] for c in m.tool_calls]]
        self._hash.update(b"\x1e" + json.dumps(part, sort_keys=True, default=str).encode())  # JSON never holds a raw \x1e

    def key(self) -> str:
        return self._hash.copy().hexdigest()


def history_key(messages: list[Message], tools: list[ToolSpec] | tuple[()] = ()) -> str:
    """What a prompt is sampled for, as a digest: every message's role, text, reasoning and calls,
    and the tools (tool-call ids are left out: some clients rewrite them)."""
    running = _HistoryHash(tools)
    for m in messages:
        running.add(m)
    return running.key()


def _same_reply(returned: Message, echoed: Message) -> bool:
    """Whether `echoed` is `returned` as a client sends it back: equal content (outer whitespace
    aside), the same calls with equal values, and the same reasoning unless it was dropped."""
    if echoed.reasoning is not None and echoed.reasoning != returned.reasoning:
        return False
    if echoed.content.strip() != returned.content.strip() or len(echoed.tool_calls) != len(returned.tool_calls):
        return False
    return all(a.name == b.name and same_value(a.arguments, b.arguments)
               for a, b in zip(returned.tool_calls, echoed.tool_calls, strict=True))


def same_value(a: Any, b: Any) -> bool:
    """JSON values equal as values: 57 == 57.0 and 0.5 == 0.50, but true is not 1 and "1" is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _as_returned(echoed: Message, returned: Message) -> Message:
    """The echoed message in the form the gateway returned it (its reasoning, content and typed
    values), keeping the client's tool-call ids, which its tool messages refer to."""
    calls = [c.model_copy(update={"arguments": r.arguments}) for c, r in zip(echoed.tool_calls, returned.tool_calls,
                                                                               strict=True)]
    return echoed.model_copy(update={"reasoning": returned.reasoning, "content": returned.content, "tool_calls": calls})
