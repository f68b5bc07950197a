"""Context management: rewrites of the agent's own history, by the harness or by the policy.

In Forge a white-box agent registers its context-management function s_{t+1} = f_CM(s_t, a_t, o_t)
so every training state can be rebuilt exactly, and context management is part of the model's
action, trained inside the RL loop (M2_NOTES §4) — applying it only at inference leaves the policy
unprepared for the contexts it then sees ("context rot"). Two ways in here, recorded alike:

  * a **fixed** manager (`FixedContext`, e.g. `DropOldToolOutputs`): the harness applies a
    registered function once the prompt passes a token threshold;
  * **context actions** (`ContextActions`): the registered functions are offered to the model as
    tools (`context_drop_tool_outputs`, `context_keep_last_turns`, `context_summarize`); when the
    policy calls one, the harness applies it after that turn's observations. The call is an
    ordinary completion, so the same loss trains it.

Either way a rewrite breaks the append-only chain of token ids (DESIGN.md contract 2): the loop
renders the rewritten messages fresh, the next call starts a new root of the prefix tree, and the
trajectory records who rewrote what (`metadata["context_rewrites"]`: the call and message index,
`policy` or `harness`, the function and its arguments). Registered functions are pure functions of
the messages, so `agent/replay.py` rebuilds every call's prompt from the record. A user's own
`ContextManager` (any object with `maybe_rewrite`) still works; its rewrites are recorded with the
rewritten messages themselves, since no registered function can replay them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from forgerl.errors import ConfigError
from forgerl.types import Message, ToolCall, ToolSpec

ContextFunction = Callable[..., "list[Message] | None"]
"""f(messages, **arguments) -> the rewritten messages, or None when there is nothing to rewrite.
Must be a pure function of its inputs: replaying a trajectory calls it again."""

TOOL_PREFIX = "context_"
OLD_OUTPUT = "[old tool output removed]"
MAX_SUMMARY_CHARS = 4000


@runtime_checkable
class ContextManager(Protocol):
    def maybe_rewrite(self, messages: Sequence[Message], prompt_len: int) -> list[Message] | None:
        """Called before each LLM call with the current context and the next prompt's length in
        tokens; returns the rewritten context, or None to keep the history (and the chain)."""
        ...


# --- the registered functions --------------------------------------------------------------------


def _is_context_output(message: Message) -> bool:
    return message.role == "tool" and (message.name or "").startswith(TOOL_PREFIX)


def drop_tool_outputs(messages: Sequence[Message], keep_last: int = 1, placeholder: str = OLD_OUTPUT) -> list[Message] | None:
    """Replace the text of every tool result but the last `keep_last` with a placeholder. Tool outputs
    are usually the bulk of an agent's context and the oldest the least useful; the calls stay, so the
    model still sees what it did. Context tools' own short acknowledgements are neither counted nor dropped."""
    positions = [i for i, m in enumerate(messages) if m.role == "tool" and not _is_context_output(m)]
    old = [i for i in positions[: max(len(positions) - keep_last, 0)] if messages[i].content != placeholder]
    if not old:
        return None
    rewritten = list(messages)
    for i in old:
        rewritten[i] = messages[i].model_copy(update={"content": placeholder})
    return rewritten


def drop_old_rounds(messages: Sequence[Message], keep_rounds: int = 1, placeholder: str = OLD_OUTPUT) -> list[Message] | None:
    """Replace the text of the tool results of every turn but the last `keep_rounds`. Unlike
    `drop_tool_outputs` it never hides a result of the turn just answered, however many parallel
    calls that turn made: the harness applies it before the model has read them."""
    starts = _turn_starts(messages, _opening_end(messages))
    if len(starts) <= keep_rounds:
        return None
    cut = starts[len(starts) - keep_rounds] if keep_rounds > 0 else len(messages)
    old = [i for i in range(cut) if messages[i].role == "tool" and not _is_context_output(messages[i])
           and messages[i].content != placeholder]
    if not old:
        return None
    rewritten = list(messages)
    for i in old:
        rewritten[i] = messages[i].model_copy(update={"content": placeholder})
    return rewritten


def _opening_end(messages: Sequence[Message]) -> int:
    """Index of the first assistant message: everything before it (system prompt, task) is kept."""
    return next((i for i, m in enumerate(messages) if m.role == "assistant"), len(messages))


def _turn_starts(messages: Sequence[Message], start: int) -> list[int]:
    return [i for i in range(start, len(messages)) if messages[i].role == "assistant"]


def keep_last_turns(messages: Sequence[Message], turns: int = 2) -> list[Message] | None:
    """Keep the opening messages and the last `turns` assistant turns (each with its tool results);
    the turns in between are replaced by one line saying how many were removed. Whole turns go, so
    every kept tool result still follows the call it answers."""
    opening = _opening_end(messages)
    starts = _turn_starts(messages, opening)
    if len(starts) <= turns:
        return None
    cut = starts[len(starts) - turns] if turns > 0 else len(messages)
    removed = len(starts) - turns
    marker = Message(role="user", content=f"[{removed} earlier turn(s) removed from the context]")
    return [*messages[:opening], marker, *messages[cut:]]


def summarize(messages: Sequence[Message], summary: str) -> list[Message] | None:
    """Replace everything after the opening messages with the model's own summary (a note to keep),
    except the current turn (the call that asked for it and its acknowledgement), so the chat stays
    well formed. The note is the model's text, shown back as a user message, escaped by the chat
    format like any other content."""
    opening = _opening_end(messages)
    starts = _turn_starts(messages, opening)
    if not starts:
        return None
    current = starts[-1]
    note = Message(role="user", content=f"[your notes on the earlier turns]\n{summary[:MAX_SUMMARY_CHARS]}")
    return [*messages[:opening], note, *messages[current:]]


_FUNCTIONS: dict[str, ContextFunction] = {}
_TOOLS: dict[str, ToolSpec] = {}


def register_context_function(name: str, function: ContextFunction, tool: ToolSpec | None = None) -> None:
    """Register `function` under `name` (replaying needs it); with `tool`, the policy may call it as
    `context_<name>` (the tool's parameters are the function's keyword arguments)."""
    if not name.isidentifier():
        raise ConfigError(f"context function name {name!r} must be an identifier")
    _FUNCTIONS[name] = function
    if tool is not None:
        if tool.name != TOOL_PREFIX + name:
            raise ConfigError(f"the tool of context function {name!r} must be named {TOOL_PREFIX + name!r}, got {tool.name!r}")
        _TOOLS[name] = tool


def context_function(name: str) -> ContextFunction:
    if name not in _FUNCTIONS:
        raise ConfigError(f"unknown context function {name!r}; registered: {', '.join(sorted(_FUNCTIONS))}")
    return _FUNCTIONS[name]


def context_tools(names: Sequence[str]) -> list[ToolSpec]:
    missing = [n for n in names if n not in _TOOLS]
    if missing:
        raise ConfigError(f"context function(s) {missing} cannot be called by the policy; callable: {', '.join(sorted(_TOOLS))}")
    return [_TOOLS[n] for n in names]


def _int_param(description: str, minimum: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "description": description}


register_context_function("drop_tool_outputs", drop_tool_outputs, ToolSpec(
    name="context_drop_tool_outputs",
    description="Free context: blank all tool results but the last keep_last (note values you need first).",
    parameters={"type": "object", "properties": {"keep_last": _int_param("tool results to keep", 0)},
                "required": [], "additionalProperties": False}))
register_context_function("drop_old_rounds", drop_old_rounds, ToolSpec(
    name="context_drop_old_rounds",
    description="Free context: blank the tool results of all but your last keep_rounds turns.",
    parameters={"type": "object", "properties": {"keep_rounds": _int_param("turns whose results to keep", 0)},
                "required": [], "additionalProperties": False}))
register_context_function("keep_last_turns", keep_last_turns, ToolSpec(
    name="context_keep_last_turns",
    description="Free context: keep the task and only your last `turns` turns (with their results).",
    parameters={"type": "object", "properties": {"turns": _int_param("turns to keep", 0)},
                "required": ["turns"], "additionalProperties": False}))
register_context_function("summarize", summarize, ToolSpec(
    name="context_summarize",
    description="Free context: replace all earlier turns with your summary; write down every value you still need.",
    parameters={"type": "object", "properties": {"summary": {"type": "string"}},
                "required": ["summary"], "additionalProperties": False}))


# --- who decides: the harness (fixed) or the policy (actions) --------------------------------------


@dataclass(frozen=True)
class ContextOp:
    """One application of a registered function: what a rewrite record stores."""

    function: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def apply(self, messages: Sequence[Message]) -> list[Message] | None:
        return context_function(self.function)(messages, **self.arguments)


class FixedContext:
    """The harness applies `function(**arguments)` before any call whose prompt exceeds
    `trigger_tokens`. `last_op` tells the loop what it applied, so the rewrite is replayable."""

    def __init__(self, function: str, trigger_tokens: int, **arguments: Any) -> None:
        if trigger_tokens < 1:
            raise ConfigError(f"a fixed context manager's trigger_tokens must be >= 1, got {trigger_tokens}")
        context_function(function)  # unknown names fail at construction, not mid-episode
        self.op = ContextOp(function, dict(arguments))
        self.trigger_tokens = trigger_tokens
        self.last_op: ContextOp | None = None

    def maybe_rewrite(self, messages: Sequence[Message], prompt_len: int) -> list[Message] | None:
        self.last_op = None
        if prompt_len <= self.trigger_tokens:
            return None
        rewritten = self.op.apply(messages)
        if rewritten is not None:
            self.last_op = self.op
        return rewritten


class DropOldToolOutputs(FixedContext):
    """The classic fixed policy: past `max_prompt_tokens`, drop all tool outputs but the last `keep_last`."""

    def __init__(self, max_prompt_tokens: int, keep_last: int = 1, placeholder: str = OLD_OUTPUT) -> None:
        if max_prompt_tokens < 1 or keep_last < 0:
            raise ValueError("max_prompt_tokens must be >= 1 and keep_last >= 0")
        kwargs: dict[str, Any] = {"keep_last": keep_last}
        if placeholder != OLD_OUTPUT:
            kwargs["placeholder"] = placeholder
        super().__init__("drop_tool_outputs", max_prompt_tokens, **kwargs)
        self.max_prompt_tokens, self.keep_last, self.placeholder = max_prompt_tokens, keep_last, placeholder


class ContextActions:
    """Context management as the policy's action: `functions` are offered as tools; a call is
    acknowledged at once and applied after the turn (`take_requested`). `fallback`, when given, is a
    fixed manager the harness still applies when the policy did not act (None: the policy alone
    manages its context, and a context that overflows truncates the episode)."""

    def __init__(self, functions: Sequence[str] = ("drop_tool_outputs", "keep_last_turns", "summarize"),
                 fallback: FixedContext | None = None) -> None:
        self.specs = context_tools(functions)
        self.fallback = fallback
        self._requested: ContextOp | None = None
        self.last_op: ContextOp | None = None
        self.decided_by: Literal["policy", "harness"] = "policy"

    def tools(self) -> list[ToolSpec]:
        return list(self.specs)

    def owns(self, call: ToolCall) -> bool:
        return any(call.name == spec.name for spec in self.specs)

    def request(self, call: ToolCall) -> str:
        """Take the policy's call (arguments already checked against the tool's schema); the last
        request of a turn wins. Returns the observation the model reads."""
        self._requested = ContextOp(call.name.removeprefix(TOOL_PREFIX), dict(call.arguments))
        return f"ok: the context will be rewritten by {call.name} before your next turn"

    def maybe_rewrite(self, messages: Sequence[Message], prompt_len: int) -> list[Message] | None:
        requested, self._requested, self.last_op = self._requested, None, None
        if requested is not None:
            rewritten = requested.apply(messages)
            if rewritten is not None:
                self.last_op, self.decided_by = requested, "policy"
                return rewritten
        if self.fallback is not None:
            rewritten = self.fallback.maybe_rewrite(messages, prompt_len)
            self.last_op, self.decided_by = self.fallback.last_op, "harness"
            return rewritten
        return None


def context_tools_of(manager: object) -> list[ToolSpec]:
    """The tools a manager offers the policy (none for a fixed or user manager)."""
    tools = getattr(manager, "tools", None)
    return list(tools()) if callable(tools) else []


def rewrite_record(manager: object, *, call: int, message: int, rewritten: Sequence[Message]) -> dict[str, Any]:
    """What the trajectory keeps about a rewrite: enough to replay it exactly."""
    op: ContextOp | None = getattr(manager, "last_op", None)
    record: dict[str, Any] = {"call": call, "message": message}
    if op is None:  # a user's manager: keep the result itself
        record.update(by="harness", function=type(manager).__name__,
                      messages=[m.model_dump(mode="json") for m in rewritten])
        return record
    by = manager.decided_by if isinstance(manager, ContextActions) else "harness"
    record.update(by=by, function=op.function, arguments=dict(op.arguments))
    return record
