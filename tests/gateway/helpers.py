"""Scripted replies for gateway tests: the gold path of a tool-reasoning task, as the model would write it."""

from __future__ import annotations

from forgerl.chat.base import ChatFormat
from forgerl.envs.base import sample_task
from forgerl.envs.tool_reasoning import gold_messages


def gold_replies(fmt: ChatFormat, seed: int, difficulty: int = 1) -> list[str]:
    """The completion texts that play the gold conversation of the task (family, seed, difficulty)."""
    task = sample_task("tool-reasoning", seed, difficulty)
    return [fmt.render_assistant_body(m) for m in gold_messages(task) if m.role == "assistant"]
