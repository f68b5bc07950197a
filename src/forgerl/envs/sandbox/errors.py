"""The sandbox's two kinds of failure, told apart for contract 4.

`SandboxError` (forgerl.errors) is the sandbox failing: it cannot start a command, its workspace
vanished. `SandboxRequestError` is the caller asking for something the sandbox refuses (a path
that escapes the workspace, an empty command): when a tool passes the agent's input through, that
is the agent's mistake, so it is also a `ToolError` and the agent loop shows it as an observation.
It stays a `SandboxError` so existing `except SandboxError` handlers keep catching it.
"""

from __future__ import annotations

from forgerl.errors import SandboxError, ToolError
from forgerl.types import Boundary


class SandboxRequestError(ToolError, SandboxError):
    """A request the sandbox refuses because of its arguments, not because it is broken."""

    boundary = Boundary.TOOL
