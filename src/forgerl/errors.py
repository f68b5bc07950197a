"""One exception type per boundary (contract 4). Each carries a message that says what was wrong
and, where the user can act, what to do."""

from __future__ import annotations

from forgerl.types import Boundary


class ForgerlError(Exception):
    """`hint` (optional) says what to do; the CLI prints it as a second line (forgerl/cli/errors.py)."""

    boundary: Boundary = Boundary.AGENT

    def __init__(self, *args: object, hint: str | None = None) -> None:
        super().__init__(*args)
        self.hint = hint


class ConfigError(ForgerlError, ValueError):
    """A bad configuration, model directory or command-line value."""


class EngineError(ForgerlError):
    boundary = Boundary.ENGINE


class ContextLengthError(EngineError, ValueError):
    """The prompt (plus requested tokens) does not fit the model's context."""


class ParseError(ForgerlError, ValueError):
    """A completion that does not follow the chat format. Becomes an observation, not a crash."""

    boundary = Boundary.PARSE


class ToolError(ForgerlError):
    boundary = Boundary.TOOL


class SandboxError(ForgerlError):
    boundary = Boundary.SANDBOX


class VerifierError(ForgerlError):
    boundary = Boundary.VERIFIER


class RolloutTimeout(ForgerlError):
    boundary = Boundary.TIMEOUT
