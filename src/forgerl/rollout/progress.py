"""Progress inside a training step or an evaluation: a transient rich bar on a terminal, nothing
elsewhere (CI logs keep their one line per step).

Why: a step's rollouts or an evaluation can take minutes; without a bar the run looks hung.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@contextmanager
def step_progress(description: str, total: int, *, stream: TextIO | None = None,
                  enabled: bool | None = None) -> Iterator[Callable[[], None]]:
    """Yield `advance()` (one episode done). The bar is drawn on stderr only when it is a terminal
    (or `enabled` says so) and disappears when the step ends."""
    if not (is_terminal(stream) if enabled is None else enabled) or total <= 0:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(file=stream if stream is not None else sys.stderr, force_terminal=enabled or None)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("episodes"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)


__all__ = ["is_terminal", "step_progress"]
