"""Running one command under a wall clock with bounded output, and killing everything it left.

Shared by every backend: a backend only decides *what* argv to start (bwrap ..., unshare ..., or
the bare shell); this module starts it in its own process group, feeds stdin, keeps at most
`max_output_bytes` per stream, kills the group on timeout or output flood, and afterwards sweeps
any survivor (a backgrounded `sleep 1000 &` holding the pipe open, or a process that escaped the
group with `setsid`). Namespaced backends get the sweep for free from the PID namespace; the
subprocess fallback relies on the dedicated uid (when we are root) or an environment marker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from forgerl.envs.sandbox.errors import SandboxRequestError
from forgerl.envs.sandbox.limits import CappedBuffer, ExecResult, Limits, explain_limits
from forgerl.errors import SandboxError

MARKER_ENV = "FORGERL_SANDBOX_ID"
"""Environment variable set on every sandboxed process; the unisolated fallback finds leftovers by it."""
RUN_ENV = "FORGERL_SANDBOX_RUN"
"""Per-run marker: concurrent runs in one sandbox must not sweep each other's processes."""

_FLOOD_BYTES = 8 * 1024 * 1024  # kill a command once it printed this much beyond what we keep
_READ_CHUNK = 65536


@dataclass
class Spawn:
    """What a backend asks the runner to start."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None = None
    popen_kwargs: dict = field(default_factory=dict)


def _proc_ids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _uid_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _has_marker(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return marker in fh.read().split(b"\0")
    except OSError:
        return False


def kill_matching(match: Callable[[int], bool], rounds: int = 50) -> int:
    """SIGKILL every process `match` selects, repeating until none is left (a fork bomb keeps
    spawning while we kill). Returns how many kills were sent."""
    me = os.getpid()
    sent = 0
    for _ in range(rounds):
        victims = [pid for pid in _proc_ids() if pid != me and match(pid)]
        if not victims:
            return sent
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
                sent += 1
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.005)
    return sent


def kill_uid(uid: int) -> int:
    """Kill every process whose real uid is `uid` (a uid given to exactly one sandbox)."""
    if uid == 0 or uid == os.getuid():
        raise SandboxError(f"refusing to kill all processes of uid {uid}: it is not a sandbox-only uid")
    return kill_matching(lambda pid: _uid_of(pid) == uid)


def kill_marked(value: str, name: str = MARKER_ENV) -> int:
    """Kill every process whose environment has `name=value` (a sandbox's or a run's marker)."""
    marker = f"{name}={value}".encode()
    return kill_matching(lambda pid: _has_marker(pid, marker))


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def _pump(stream: asyncio.StreamReader, buf: CappedBuffer, flood: asyncio.Event) -> None:
    while chunk := await stream.read(_READ_CHUNK):
        buf.add(chunk)
        if buf.total > buf.cap + _FLOOD_BYTES:
            flood.set()


async def _exited(pid: int) -> None:
    """Return when process `pid` has exited. Not `Process.wait()`: on Python 3.11 that also waits
    for the pipes to close, which a backgrounded `sleep 1000 &` holding stdout would delay until
    the wall clock, when it should be swept right away."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # already gone (and reaped)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(fd, lambda: done.done() or done.set_result(None))
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    try:
        stdin.write(data)
        await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the command did not read all of its input: its business
    finally:
        stdin.close()


async def run_spawn(spawn: Spawn, limits: Limits, *, stdin: str | None, isolated: bool,
                    sweep: Callable[[], object], watchdog: Callable[[], Awaitable[str]] | None = None) -> ExecResult:
    """Start `spawn`, enforce the wall clock and output cap, kill leftovers, explain limits.
    `watchdog()` returns (with the reason) when the command must be stopped early (quota.py)."""
    start = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *spawn.argv, env=spawn.env, cwd=spawn.cwd, process_group=0,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, **spawn.popen_kwargs,
        )
    except OSError as exc:
        raise SandboxError(f"could not start the sandboxed command ({spawn.argv[0]}): {exc}") from exc

    out, err = CappedBuffer(limits.max_output_bytes), CappedBuffer(limits.max_output_bytes)
    flood = asyncio.Event()
    assert proc.stdout is not None and proc.stderr is not None
    pumps = asyncio.gather(_pump(proc.stdout, out, flood), _pump(proc.stderr, err, flood))
    feeder = asyncio.create_task(_feed(proc.stdin, stdin.encode())) if proc.stdin and stdin is not None else None
    waiter = asyncio.create_task(_exited(proc.pid))
    flooded = asyncio.create_task(flood.wait())
    watched = asyncio.create_task(watchdog()) if watchdog is not None else None
    timed_out = output_flood = False
    stopped: str | None = None
    try:
        done, _ = await asyncio.wait({waiter, flooded, *([watched] if watched else [])}, timeout=limits.wall_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            timed_out, output_flood = not done, flooded in done
            if watched is not None and watched in done:
                stopped = watched.result() if watched.exception() is None else None
            _kill_group(proc.pid)
            sweep()
        await waiter
    finally:
        flooded.cancel()
        waiter.cancel()
        if watched is not None:
            watched.cancel()
        _kill_group(proc.pid)  # leftovers in the group: `sleep 1000 &` must not outlive run()
        sweep()
        # No proc.kill() here: Popen.send_signal polls, which would reap the zombie behind the
        # event loop's child watcher (it then reports 255). The group kill above reached it.
    exit_code = await proc.wait()
    try:
        await asyncio.wait_for(pumps, timeout=2.0)
    except TimeoutError:
        pass  # something we could not kill still holds the pipe; keep what we have
    if feeder is not None:
        feeder.cancel()
    duration = time.monotonic() - start
    stderr_text = err.text()
    if timed_out or output_flood or stopped:
        exit_code = None
    reason = explain_limits(limits, exit_code, stderr_text, timed_out=timed_out, output_flood=output_flood,
                            quota=stopped)
    return ExecResult(
        exit_code=exit_code, stdout=out.text(), stderr=stderr_text, duration_s=duration,
        timed_out=timed_out, output_truncated=out.truncated or err.truncated,
        killed_reason=reason, isolated=isolated,
    )


def inside(workspace: Path, rel_path: str) -> Path:
    """`rel_path` resolved under `workspace`; SandboxError if it is absolute or escapes (`..`,
    or a symlink the sandbox planted that points outside)."""
    if not isinstance(rel_path, str) or not rel_path or "\0" in rel_path:
        raise SandboxRequestError(f"invalid workspace path {rel_path!r}: give a non-empty relative path")
    if os.path.isabs(rel_path):
        raise SandboxRequestError(f"path {rel_path!r} is absolute: give a path relative to the workspace")
    root = workspace.resolve()
    target = (root / rel_path).resolve()
    if target != root and root not in target.parents:
        raise SandboxRequestError(f"path {rel_path!r} escapes the sandbox workspace: stay inside it")
    return target
