"""`forgerl rollout`: one episode of the agent loop on one task, printed as a readable transcript.

With the built-in tiny random model the transcript is gibberish and the reward 0: that is the
honest result of an untrained policy, shown so the whole path (engine -> loop -> env -> verifier)
can be watched end to end. Everything the model wrote is printed as plain text, never as rich
markup: model output is untrusted, and "[/]" in it must not break (or restyle) the terminal.

In cli/ (it was agent/demo.py) because it is presentation: the agent package runs episodes, this
prints one. `forgerl rollout` (cli/envs.py) and `forgerl.rollout(show=True)` (api.py) call it;
cli/envs.py imports it inside the command, so `forgerl --help` does not load the agent and engine.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from forgerl.agent.loop import run_episode
from forgerl.agent.tools import close_env
from forgerl.chat import get_format
from forgerl.engine.base import Engine, SamplingParams
from forgerl.envs.base import Task, make_env, sample_task
from forgerl.types import Message, Trajectory, TrajectoryStatus

if TYPE_CHECKING:
    from rich.console import Console

_ROLE_STYLE = {"system": "magenta", "user": "cyan", "assistant": "green", "tool": "yellow"}


def run_demo(
    model: str = "tiny-random",
    env: str = "arithmetic",
    seed: int = 0,
    chat_format: str = "minimax_m2",
    max_turns: int = 4,
    max_tokens: int = 96,
    *,
    engine: Engine | None = None,
    console: Console | None = None,
    save_path: str | Path | None = None,
) -> Trajectory:
    """Run and print one episode; `engine` replaces the built-in one (tests inject a fake)."""
    from rich.console import Console

    console = console or Console()
    fmt = get_format(chat_format)
    if engine is None:
        from forgerl.engine import load_engine  # heavy: forgerl.engine, kept out of forgerl --help

        with console.status(f"loading {model} ..."):
            engine = load_engine(model, chat_format=chat_format, seed=seed)
    task, environment = sample_task(env, seed), make_env(env, seed)
    sampling = SamplingParams(max_tokens=max_tokens, temperature=1.0, top_p=0.95, top_k=40, seed=seed)

    async def episode() -> Trajectory:
        try:
            return await run_episode(engine, fmt, environment, task, sampling=sampling, max_turns=max_turns,
                                     max_total_tokens=engine.max_context)
        finally:
            await close_env(environment)  # a sandbox-backed family must not leave its workspace behind
            await engine.aclose()

    start = time.perf_counter()
    trajectory = asyncio.run(episode())
    print_transcript(console, trajectory, task, elapsed_s=time.perf_counter() - start)
    if save_path is not None:
        Path(save_path).write_text(trajectory.model_dump_json(indent=2))
        console.print(f"trajectory saved to {save_path}", markup=False)
    return trajectory


def print_transcript(console: Console, trajectory: Trajectory, task: Task, elapsed_s: float) -> None:
    """Every message, the errors, the outcome and the token counts, all as plain Text."""
    from rich.rule import Rule
    from rich.text import Text

    console.print(Rule(Text(f"task {task.id} ({trajectory.chat_format})")))
    for message in trajectory.messages:
        console.print(_message_panel(message))
    for error in trajectory.errors:
        console.print(Text(f"error [{error.boundary.value}] turn {error.turn}: {error.message}", style="red"))
    console.print(_summary(trajectory, elapsed_s))


def _message_panel(message: Message):  # -> rich.panel.Panel
    from rich.panel import Panel
    from rich.text import Text

    body = Text()
    if message.reasoning:
        body.append(message.reasoning.strip() + "\n", style="dim italic")
    if message.content:
        body.append(message.content)
    for call in message.tool_calls:
        body.append(f"\n-> {call.name}({json.dumps(call.arguments, ensure_ascii=False)})", style="bold")
    title = message.role if message.role != "tool" else f"tool {message.name or ''}".strip()
    failed = message.role == "tool" and message.content.startswith("Error:")
    return Panel(body, title=Text(title), title_align="left",
                 border_style="red" if failed else _ROLE_STYLE.get(message.role, "white"))


def _summary(trajectory: Trajectory, elapsed_s: float):  # -> rich.table.Table
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=False, title="outcome")

    def row(name: str, value: str, style: str = "") -> None:  # Text cells: no markup parsing
        table.add_row(Text(name), Text(value), style=style)

    completion = trajectory.num_completion_tokens
    status_style = {TrajectoryStatus.COMPLETED: "green", TrajectoryStatus.TRUNCATED: "yellow"}
    row("status", trajectory.status.value, status_style.get(trajectory.status, "red"))
    row("end", trajectory.end_reason or "")
    if trajectory.failure is not None:
        row("failure", f"[{trajectory.failure.boundary.value}] {trajectory.failure.message}", "red")
    row("reward", "none (failed: kept out of the loss)" if trajectory.reward is None else f"{trajectory.reward:g}")
    for name, value in trajectory.reward_breakdown.items():
        row(f"  {name}", f"{value:g}")
    last_prompt = len(trajectory.calls[-1].prompt_ids) if trajectory.calls else 0
    row("llm calls", str(len(trajectory.calls)))
    row("tokens", f"{completion} sampled, last prompt {last_prompt}")
    row("speed", f"{completion / elapsed_s:.1f} tokens/s over {elapsed_s:.2f} s" if elapsed_s > 0 else "-")
    return table
