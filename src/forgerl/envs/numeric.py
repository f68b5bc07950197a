"""The shared shape of numeric-answer families (arithmetic, tool-reasoning): the episode ends with
`submit_answer(answer: number)`, only the first submission counts, and the verifier compares that
number with the task's gold answer."""

from __future__ import annotations

from typing import Any

from forgerl.envs.base import Environment, Task
from forgerl.envs.rewards import Verdict, verify_number
from forgerl.errors import ToolError, VerifierError
from forgerl.types import Trajectory


class NumericAnswerEnv(Environment):
    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.task: Task | None = None
        self._submitted: int | float | None = None

    @property
    def done(self) -> bool:
        return self._submitted is not None

    def _start(self, task: Task) -> None:
        self.task, self._submitted = task, None

    def _submit(self, answer: Any) -> str:
        from forgerl.envs.arithmetic import format_number  # cycle: forgerl.envs.arithmetic imports forgerl.envs.numeric

        if self._submitted is not None:
            raise ToolError("an answer was already submitted; only the first submission counts")
        if isinstance(answer, bool) or not isinstance(answer, int | float):
            raise ToolError(f"answer must be a number, got {answer!r}")
        self._submitted = answer
        return f"Answer {format_number(answer)} submitted."

    def verify(self, trajectory: Trajectory) -> Verdict:
        if self.task is None:
            raise VerifierError("reward() called before reset(): no task to verify against")
        verdict = verify_number(self.task.verifier, self._submitted, self.task.answer)
        self.describe(verdict)
        return verdict

    def describe(self, verdict: Verdict) -> None:
        """Family-specific parts and evidence added to the verdict (default: none)."""
