"""Where SWE tasks run code: the project sandbox (`forgerl.envs.sandbox`), behind two helpers so
the rest of this package names limits in one place."""

from __future__ import annotations

from forgerl.envs.sandbox import Limits, Sandbox, create_sandbox


def make_limits(wall_s: float, memory_mb: int = 1024) -> Limits:
    """Wall-clock and CPU seconds capped alike: test suites here are single-threaded."""
    return Limits(wall_s=wall_s, cpu_s=wall_s, memory_mb=memory_mb)


def new_sandbox(files: dict[str, str], wall_s: float) -> Sandbox:
    return create_sandbox(files, limits=make_limits(wall_s))
