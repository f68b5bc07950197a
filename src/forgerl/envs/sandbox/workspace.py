"""What every workspace-backed environment needs around its sandbox: checking a path the agent
names, and releasing a previous episode's sandbox from the synchronous `reset()`."""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from forgerl.errors import ToolError

_PENDING: set[asyncio.Task[Any]] = set()  # releases in flight, kept referenced until done


def workspace_path(path: Any, root: Path, *, place: str = "workspace", example: str = "") -> str:
    """`path` normalised relative to `root`; a ToolError (which the agent reads) for anything that is
    not a non-empty relative path, contains NUL, leaves `root` by `..`, or leads out of it through a
    symlink. `place` names the root in messages ("workspace", "repository root")."""
    if not isinstance(path, str) or not path.strip():
        raise ToolError(f"path must be a non-empty string relative to the {place}, got {path!r}")
    if "\x00" in path:
        raise ToolError("path contains a NUL byte")
    if path.startswith(("/", "~")):
        hint = f", e.g. {example}" if example else ""
        raise ToolError(f"path {path!r} is absolute; give a path relative to the {place}{hint}")
    rel = posixpath.normpath(path)
    if rel == ".":
        raise ToolError(f"path {path!r} names the {place} itself; give a file path inside it")
    if rel == ".." or rel.startswith("../"):
        raise ToolError(f"path {path!r} is outside the {place}; give a file path inside it")
    resolved_root = root.resolve()
    if not (resolved_root / rel).resolve().is_relative_to(resolved_root):
        raise ToolError(f"path {path!r} leads outside the {place} (through a symlink); refused")
    return rel


def release_soon(release: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """`reset()` is synchronous: run `release()` (closing a previous episode's sandbox) on the running
    loop if there is one, kept referenced until it finishes, else right here."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(release())
        return
    task = loop.create_task(release())
    _PENDING.add(task)
    task.add_done_callback(_PENDING.discard)
