"""Stopping a training run without losing work: the first SIGINT/SIGTERM lets the current step
finish, then the run checkpoints and stops; a second one abandons the step.

Why finish first: a step's rollouts are most of its cost, and finishing it keeps them trained on;
abandoning is for when that takes too long. An abandon never lands inside a weight update (the
optimizer step, the push to the engine and the step counter move together), so the policy in
memory is always a completed step's and can be checkpointed: the resume loses at most the
abandoned step's training, and reuses its stored rollouts (train/loop.py).
"""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from forgerl.errors import ForgerlError

EXIT_INTERRUPTED = 130  # what a shell reports for a process ended by SIGINT
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(ForgerlError):
    """The run stopped on a signal after writing a checkpoint; its message says how to resume."""

    def __init__(self, run_dir: str | Path, step: int, *, abandoned: bool, checkpointed: bool) -> None:
        self.run_dir, self.step, self.abandoned, self.checkpointed = str(run_dir), step, abandoned, checkpointed
        what = "abandoned the step in progress" if abandoned else "finished the step in progress"
        saved = f"checkpoint of step {step} written" if checkpointed else "the latest checkpoint stands"
        super().__init__(f"training interrupted: {what} ({saved}). Resume with: {resume_command(run_dir)}")


def resume_command(run_dir: str | Path) -> str:
    return f"forgerl train --resume --run-dir {shlex.quote(str(run_dir))}"


class Abandon(KeyboardInterrupt):
    """Raised where an abandoned step stops: in the main thread by the second signal, or by a
    trainer thread that was about to update the weights after the abandon."""


@dataclass
class StopControl:
    """Shared between the signal handler, the loop and its trainer thread."""

    stop_requested: bool = False
    abandon_requested: bool = False
    updating: bool = False
    """True from the optimizer step until the loop has counted the step: an abandon then waits."""
    current_step: Callable[[], int] = lambda: 0

    def request_stop(self) -> None:
        """Finish the current step, checkpoint, stop (the first signal; tests and hooks call it)."""
        if not self.stop_requested:
            self.stop_requested = True
            _say(f"finishing step {self.current_step()} then checkpointing; Ctrl-C again to abandon it")

    def request_abandon(self) -> None:
        self.stop_requested = self.abandon_requested = True
        if self.updating:
            _say("abandoning after the weight update in progress")
            return
        _say(f"abandoning step {self.current_step()}")
        raise Abandon()

    def begin_update(self) -> None:
        """Called before the optimizer changes the weights; a trainer thread stops here once the
        step was abandoned, so the weights stay those of the last completed step."""
        if self.updating:
            return
        if self.abandon_requested:
            raise Abandon()
        self.updating = True

    def end_update(self) -> None:
        """Called once the step is counted; an abandon that waited for the update happens now."""
        self.updating = False
        if self.abandon_requested:
            raise Abandon()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_requested:
            self.request_abandon()
        else:
            self.request_stop()


def _say(message: str) -> None:
    sys.stderr.write(f"\nforgerl: {message}\n")
    sys.stderr.flush()


@contextmanager
def handle_stop_signals(control: StopControl) -> Iterator[StopControl]:
    """Install the two-stage handler for SIGINT and SIGTERM (main thread only: elsewhere Python
    cannot, and the caller's own handling stands), restoring the previous handlers after."""
    if threading.current_thread() is not threading.main_thread():
        yield control
        return
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    for sig in _SIGNALS:
        signal.signal(sig, control._on_signal)
    try:
        yield control
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = ["Abandon", "EXIT_INTERRUPTED", "StopControl", "TrainingInterrupted", "handle_stop_signals", "resume_command"]
