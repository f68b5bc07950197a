"""`forgerl perturb show`: one episode's original and perturbed scaffold side by side.

Everything that comes from a task, a tool or a model is untrusted text: it is escaped with
`rich.markup.escape` before it goes into a markup string, so a "[/]" in a tool output cannot
restyle or break the terminal.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from forgerl.chat import get_format
from forgerl.envs.base import Environment, Task, make_env, sample_task
from forgerl.errors import ToolError
from forgerl.perturb.apply import apply_perturbations
from forgerl.perturb.spec import PerturbSpec
from forgerl.types import Message, ToolCall, ToolSpec

if TYPE_CHECKING:
    from rich.console import Console


@dataclass
class EpisodeView:
    """What one side of the comparison shows."""

    chat_format: str
    messages: list[Message]
    tools: list[ToolSpec]
    gold: list[list[ToolCall]]
    first_reply: str
    """The gold path's first assistant message as the model would write it in this format."""
    exchanges: list[tuple[ToolCall, str]] = field(default_factory=list)
    """The gold calls with what the environment answered (retried after transient failures)."""


async def _play_gold(env: Environment, rounds: list[list[ToolCall]], retries: int = 6) -> list[tuple[ToolCall, str]]:
    """The gold calls and their outputs, each call made again after a transient error."""
    out = []
    for round_ in rounds:
        for call in round_:
            for attempt in range(retries + 1):
                try:
                    out.append((call, await env.execute(call)))
                    break
                except ToolError as exc:
                    out.append((call, f"Error: {exc}"))
                    if attempt == retries:
                        raise
    return out


def view(env: Environment, task: Task, chat_format: str) -> EpisodeView:
    messages = env.reset(task)
    tools = env.tools()
    gold = env.gold_solution(task)
    first = get_format(chat_format).render_assistant_body(Message(role="assistant", tool_calls=gold[0])) if gold else ""
    exchanges = asyncio.run(_play_gold(env, gold))
    return EpisodeView(chat_format, messages, tools, gold, first, exchanges)


def compare(env_name: str, seed: int, spec: PerturbSpec, *, difficulty: int | None = None,
            chat_format: str = "minimax_m2") -> tuple[EpisodeView, EpisodeView, dict[str, Any]]:
    """The original and the perturbed view of the task drawn by (env_name, seed), and the record."""
    task = sample_task(env_name, seed, difficulty=difficulty)
    original = view(make_env(env_name, seed), task, chat_format)
    p = apply_perturbations(task, make_env(env_name, seed), spec, seed)
    perturbed = view(p.env, p.task, p.chat_format or chat_format)
    return original, perturbed, p.record


def _params(schema: dict[str, Any]) -> str:
    """`a: string, b?: number, c: {d: string}` (? = optional)."""
    required = set(schema.get("required", []))
    parts = []
    for name, prop in schema.get("properties", {}).items():
        kind = prop.get("type", "any")
        if kind == "object" and "properties" in prop:
            kind = "{" + _params(prop) + "}"
        parts.append(f"{name}{'' if name in required else '?'}: {kind}")
    return ", ".join(parts)


def _tool_line(spec: ToolSpec) -> str:
    return f"{spec.name}({_params(spec.parameters)}) — {spec.description}"


def _call(call: ToolCall) -> str:
    return f"{call.name}({json.dumps(call.arguments, ensure_ascii=False)})"


def _cell(lines: list[str]) -> str:
    from rich.markup import escape

    return "\n".join(escape(line) for line in lines)


def print_comparison(console: Console, original: EpisodeView, perturbed: EpisodeView, record: dict[str, Any],
                     title: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), show_lines=True, expand=True)
    table.add_column("", style="bold", no_wrap=True)
    table.add_column("original", ratio=1)
    table.add_column("perturbed", ratio=1)

    def row(name: str, pick: Any) -> None:
        table.add_row(name, _cell(pick(original)), _cell(pick(perturbed)))

    row("chat format", lambda v: [v.chat_format])
    row("system", lambda v: [m.content for m in v.messages if m.role == "system"])
    row("user", lambda v: [m.content for m in v.messages if m.role == "user"])
    row("tools", lambda v: [_tool_line(t) for t in v.tools])
    row("gold path", lambda v: [" | ".join(_call(c) for c in r) for r in v.gold])
    row("first call,\nas written", lambda v: [v.first_reply])
    row("tool results", lambda v: [f"{_call(c)} -> {out}" for c, out in v.exchanges])
    console.print(table)
    applied = Table(title="applied perturbations (trajectory.perturbations)", show_lines=True)
    applied.add_column("kind", no_wrap=True)
    applied.add_column("seed", no_wrap=True)
    applied.add_column("params")
    for entry in record["applied"]:
        applied.add_row(escape(entry["kind"]), str(entry["seed"]),
                        escape(json.dumps(entry["params"], ensure_ascii=False)))
    if not record["applied"]:
        applied.add_row("-", "-", "no dimension fired for this seed (raise --probability)")
    console.print(applied)


def show(env_name: str, seed: int, spec: PerturbSpec, *, difficulty: int | None = None,
         chat_format: str = "minimax_m2", console: Console | None = None) -> dict[str, Any]:
    """Print the comparison; returns the perturbation record."""
    from rich.console import Console

    console = console or Console()
    original, perturbed, record = compare(env_name, seed, spec, difficulty=difficulty, chat_format=chat_format)
    print_comparison(console, original, perturbed, record, f"{env_name}, seed {seed}")
    return record
