"""Where SWE tasks run code: the project sandbox (`forgerl.envs.sandbox`) when it is importable,
else a minimal private stand-in with the same interface (a subprocess in a temporary directory,
with wall-clock, CPU and memory limits). The stand-in exists only so this family works while the
sandbox package is being built; nothing outside this package may use it.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgerl.errors import SandboxError


def sandbox_api() -> tuple[Any, Any]:
    """(create_sandbox, Limits) of the real sandbox package, or of the stand-in."""
    try:
        from forgerl.envs.sandbox import Limits, create_sandbox  # type: ignore[attr-defined]
    except ImportError:
        return create_local_sandbox, LocalLimits
    return create_sandbox, Limits


def make_limits(wall_s: float, memory_mb: int = 1024) -> Any:
    _, limits_cls = sandbox_api()
    return limits_cls(wall_s=wall_s, cpu_s=wall_s, memory_mb=memory_mb)


def new_sandbox(files: dict[str, str], wall_s: float) -> Any:
    create, _ = sandbox_api()
    return create(files, limits=make_limits(wall_s))


# --- the stand-in ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalLimits:
    wall_s: float = 10.0
    cpu_s: float = 10.0
    memory_mb: int = 1024
    max_output_bytes: int = 64_000


@dataclass(frozen=True)
class LocalExecResult:
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    output_truncated: bool = False
    killed_reason: str | None = None

    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def observation(self) -> str:
        parts = [f"exit code {self.exit_code}" + (" (timed out)" if self.timed_out else "")]
        if self.stdout:
            parts.append(f"stdout:\n{self.stdout}")
        if self.stderr:
            parts.append(f"stderr:\n{self.stderr}")
        return "\n".join(parts)


def _cut(data: bytes, limit: int) -> tuple[str, bool]:
    if len(data) <= limit:
        return data.decode("utf-8", "replace"), False
    half = limit // 2
    note = f"\n[... {len(data) - limit} bytes cut ...]\n".encode()
    return (data[:half] + note + data[-half:]).decode("utf-8", "replace"), True


class LocalSandbox:
    """A temporary directory and subprocesses with limits. Not isolation: a stand-in."""

    def __init__(self, files: dict[str, str] | None, limits: LocalLimits) -> None:
        self.limits = limits
        self.workspace = Path(tempfile.mkdtemp(prefix="forgerl-swe-")).resolve()
        for rel, text in (files or {}).items():
            self.write_file(rel, text)

    def _path(self, rel: str) -> Path:
        path = (self.workspace / rel).resolve()
        if not path.is_relative_to(self.workspace):
            raise SandboxError(f"path {rel!r} is outside the sandbox workspace")
        return path

    def write_file(self, rel: str, text: str) -> None:
        path = self._path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def read_file(self, rel: str) -> str:
        return self._path(rel).read_text(encoding="utf-8")

    def list_files(self) -> list[str]:
        return sorted(str(p.relative_to(self.workspace)) for p in self.workspace.rglob("*") if p.is_file())

    async def run(self, cmd: str | list[str], *, limits: Any = None, stdin: str | None = None, cwd: str = ".") -> LocalExecResult:
        lim = limits or self.limits
        argv = ["bash", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(self.workspace),
            "PYTHONDONTWRITEBYTECODE": "1",
            "LANG": "C.UTF-8",
        }

        def limit_child() -> None:
            os.setsid()
            memory = lim.memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            cpu = max(1, int(lim.cpu_s) + 1)
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))

        start = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self._path(cwd),
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=limit_child,
        )
        timed_out = False
        try:
            out, err = await asyncio.wait_for(proc.communicate((stdin or "").encode()), timeout=lim.wall_s)
        except TimeoutError:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = await proc.communicate()
        stdout, cut_out = _cut(out, lim.max_output_bytes)
        stderr, cut_err = _cut(err, lim.max_output_bytes)
        return LocalExecResult(
            exit_code=proc.returncode if proc.returncode is not None else -9,
            stdout=stdout,
            stderr=stderr,
            duration_s=time.monotonic() - start,
            timed_out=timed_out,
            output_truncated=cut_out or cut_err,
            killed_reason="wall time" if timed_out else None,
        )

    async def close(self) -> None:
        shutil.rmtree(self.workspace, ignore_errors=True)


def create_local_sandbox(files: dict[str, str] | None = None, *, limits: LocalLimits = LocalLimits(), backend: str = "auto") -> LocalSandbox:
    return LocalSandbox(files, limits)
