"""The per-rollout `Sandbox` (workspace + backend) and the `Backend` protocol each isolation
method implements.

A Sandbox owns one host directory: `<base>/workspace` is what commands see as their working
directory (and the only place they may write); `<base>` itself may hold backend scratch (the
`unshare` backend builds its new root there). `close()` kills whatever is left and deletes `<base>`.

When the host runs as root, each sandbox gets its own throw-away uid: RLIMIT_NPROC then counts
only that sandbox's processes, the sandbox cannot signal host processes, and leftovers can be
found and killed by uid.

Removal is the one cleanup step that must not fail quietly or loudly: `shutil.rmtree` raises
RecursionError on a tree a few thousand directories deep (ignore_errors does not catch it) and
cannot empty a directory the agent made read-only when we are not root. `remove_tree` falls back to
coreutils (`chmod -R u+rwX`, then `rm -rf --one-file-system`, which handle any depth and never
cross into a mount), never raises, and records what it still could not delete
(`leaked_sandbox_dirs()`), so a leak is visible instead of silent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import subprocess
import sys
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from forgerl.envs.sandbox import quota
from forgerl.envs.sandbox.errors import SandboxRequestError
from forgerl.envs.sandbox.limits import ExecResult, Limits
from forgerl.envs.sandbox.process import MARKER_ENV, RUN_ENV, Spawn, inside, run_spawn
from forgerl.errors import SandboxError

log = logging.getLogger("forgerl.sandbox")

TMP_DIRNAME = ".tmp"
"""TMPDIR inside the workspace (list_files hides it)."""

_THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


_leaked: list[str] = []
_leaked_lock = threading.Lock()


def leaked_sandbox_dirs() -> list[str]:
    """Sandbox directories this process failed to delete (each was also logged as an error)."""
    with _leaked_lock:
        return list(_leaked)


def _coreutils(*argv: str) -> None:
    try:
        subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=300, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("%s failed: %s", argv[0], exc)


def remove_tree(path: Path | str) -> bool:
    """Delete `path` and everything under it; True when it is gone. Never raises (see the module
    docstring); a directory left behind is logged and added to `leaked_sandbox_dirs()`."""
    path = str(path)
    first_error: BaseException | None = None
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return True
    except (OSError, RecursionError) as exc:  # too deep, read-only directories, busy mounts
        first_error = exc
    if not os.path.lexists(path):
        return True
    _coreutils("chmod", "-R", "u+rwX", "--", path)  # directories the agent made read-only
    _coreutils("rm", "-rf", "--one-file-system", "--", path)
    if not os.path.lexists(path):
        return True
    with _leaked_lock:
        _leaked.append(path)
    log.error("could not delete sandbox directory %s (first error: %r); it is left on disk", path, first_error)
    return False


def python_roots() -> list[str]:
    """Host directories holding the running interpreter and its venv: bound read-only into a
    sandbox so `python3` there can import what is pip-installed here."""
    roots = []
    for prefix in (sys.base_prefix, sys.prefix):
        path = os.path.realpath(prefix)
        if path not in roots and not path.startswith("/usr/") and path != "/usr":
            roots.append(path)
    return roots


def python_bin_dirs() -> list[str]:
    """PATH entries that put this interpreter's `python3` first (venv bin, then base bin)."""
    dirs = []
    for prefix in (sys.prefix, sys.base_prefix):
        d = os.path.join(prefix, "bin")
        if d not in dirs:
            dirs.append(d)
    return dirs


def sandbox_env(home: str, sandbox_id: str, run_id: str = "") -> dict[str, str]:
    """A clean environment: nothing from the host leaks in (tokens, proxies, paths)."""
    path = ":".join([*python_bin_dirs(), "/usr/local/bin", "/usr/bin", "/bin"])
    return {
        "PATH": path, "HOME": home, "TMPDIR": f"{home}/{TMP_DIRNAME}", "LANG": "C.UTF-8",
        "USER": "sandbox", "LOGNAME": "sandbox", "PYTHONUNBUFFERED": "1", MARKER_ENV: sandbox_id, RUN_ENV: run_id,
        **_THREAD_ENV,
    }


def shell_argv(cmd: str | list[str]) -> list[str]:
    if isinstance(cmd, str):
        if not cmd.strip():
            raise SandboxRequestError("empty command: give a shell command string or an argv list")
        return ["/bin/sh", "-c", cmd]
    if not cmd or not all(isinstance(a, str) for a in cmd):
        raise SandboxRequestError(f"invalid command {cmd!r}: give a shell string or a non-empty list of strings")
    return list(cmd)


class Backend(ABC):
    """One way of isolating a command. Builds the argv; the runner does the rest."""

    name: str
    isolated: bool = True
    can_hide: bool = True
    """Whether `hidden` paths can be masked (hiding.py); only namespaced backends can."""

    def __init__(self, base: Path, workspace: Path, uid: int | None, sandbox_id: str,
                 hidden: tuple[Any, ...] = ()) -> None:
        self.base, self.workspace, self.uid, self.sandbox_id = base, workspace, uid, sandbox_id
        self.hidden = hidden  # hiding.HiddenPath masks, already resolved by create_sandbox

    @property
    @abstractmethod
    def inner_workspace(self) -> str:
        """The workspace's path as the command sees it."""

    @abstractmethod
    def spawn(self, argv: list[str], cwd_rel: str, limits: Limits, run_id: str = "") -> Spawn:
        """The host-side process to start to run `argv` in `cwd_rel` under `limits`; `run_id`
        goes into the environment so `sweep(run_id)` can find that run's leftovers."""

    def sweep(self, run_id: str | None = None) -> None:  # noqa: B027 (a default no-op hook, not abstract)
        """Kill leftovers of one run (after it returned or timed out), or of the whole sandbox
        (`run_id=None`, at close). Namespaced backends need little: the PID namespace dies with
        its init."""

    def inner_cwd(self, cwd_rel: str) -> str:
        rel = os.path.relpath(inside(self.workspace, cwd_rel), self.workspace.resolve())
        return self.inner_workspace if rel == "." else f"{self.inner_workspace}/{rel}"


def new_sandbox_uid() -> int | None:
    """A throw-away uid for one sandbox when we are root (None otherwise)."""
    if os.geteuid() != 0:
        return None
    return 1_000_000_000 + secrets.randbelow(1_000_000_000)


class Sandbox:
    """An isolated per-rollout workspace. Use as `async with create_sandbox(...) as sb:`."""

    def __init__(self, backend_cls: type[Backend], limits: Limits, hidden: tuple[Any, ...] = ()) -> None:
        self.sandbox_id = secrets.token_hex(8)
        self.base = Path(os.path.realpath(_make_base_dir()))
        self.workspace = self.base / "workspace"
        self.limits = limits
        self.uid = new_sandbox_uid()
        self._closed = False
        self._runs = 0
        try:
            self.workspace.mkdir(mode=0o700)
            (self.workspace / TMP_DIRNAME).mkdir(mode=0o700)
            self._chown(self.workspace)
            self._chown(self.workspace / TMP_DIRNAME)
            self._backend = backend_cls(self.base, self.workspace, self.uid, self.sandbox_id, hidden)
        except BaseException:
            remove_tree(self.base)
            raise
        self.backend: str = self._backend.name
        self.isolated: bool = self._backend.isolated
        self.hidden: tuple[Any, ...] = hidden
        """The host paths masked inside this sandbox (hiding.HiddenPath)."""

    def _chown(self, path: Path) -> None:
        if self.uid is not None:
            os.chown(path, self.uid, self.uid, follow_symlinks=False)

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxError("this sandbox is closed: create a new one with create_sandbox()")
        if not self.workspace.is_dir():
            raise SandboxError(f"the sandbox workspace {self.workspace} is missing (deleted from outside?)")

    async def run(self, cmd: str | list[str], *, limits: Limits | None = None, stdin: str | None = None,
                  cwd: str = ".") -> ExecResult:
        """Run `cmd` (a string goes through /bin/sh -c) in the workspace. Failures and limits are
        reported in the ExecResult; SandboxError only when the sandbox itself cannot run it."""
        self._check_open()
        limits = limits or self.limits
        argv = shell_argv(cmd)
        if not inside(self.workspace, cwd).is_dir():
            raise SandboxRequestError(f"cwd {cwd!r} is not a directory in the workspace: create it first")
        self._runs += 1
        run_id = f"{self.sandbox_id}-{self._runs}"
        spawn = self._backend.spawn(argv, cwd, limits, run_id)
        start = await asyncio.to_thread(quota.measure, self.workspace)

        async def over_quota() -> str:
            try:
                usage = await quota.watch(self.workspace, limits, start)
            except Exception as exc:  # noqa: BLE001 — a broken watchdog must not kill the command
                log.error("workspace quota watchdog of sandbox %s failed: %s", self.sandbox_id, exc)
                await asyncio.Event().wait()
            return quota.quota_message(usage, limits, killed=True)

        result = await run_spawn(spawn, limits, stdin=stdin, isolated=self.isolated,
                                 sweep=lambda: self._backend.sweep(run_id), watchdog=over_quota)
        return await self._check_quota_after(result, limits, start)

    async def _check_quota_after(self, result: ExecResult, limits: Limits, start: quota.Usage) -> ExecResult:
        """A command can finish between two watchdog walks: count once more, and say so when the
        workspace ended over its quota (the next command may then only shrink it)."""
        if result.killed_reason and "disk quota" in result.killed_reason:
            return result
        max_bytes, max_files = quota.allowed(limits, start)
        end = await asyncio.to_thread(quota.measure, self.workspace)
        if not end.over(max_bytes, max_files):
            return result
        note = quota.quota_message(end, limits, killed=False)
        result.killed_reason = f"{result.killed_reason}; {note}" if result.killed_reason else note
        return result

    def write_file(self, rel_path: str, text: str) -> None:
        """Write a text file into the workspace from the host (parents created)."""
        self._check_open()
        target = inside(self.workspace, rel_path)
        if target == self.workspace.resolve():
            raise SandboxRequestError(f"path {rel_path!r} is the workspace itself: name a file inside it")
        root = self.workspace.resolve()
        missing = [p for p in reversed(target.parents) if root in p.parents and not p.exists()]
        target.parent.mkdir(parents=True, exist_ok=True)
        for p in missing:
            self._chown(p)
        if target.is_dir():
            raise SandboxRequestError(f"path {rel_path!r} is a directory: give a file path")
        target.write_text(text, encoding="utf-8")
        self._chown(target)

    def read_file(self, rel_path: str, max_bytes: int = 1_000_000) -> str:
        """Read a workspace file as text; beyond `max_bytes` the rest is cut with a note.
        FileNotFoundError if it does not exist."""
        self._check_open()
        target = inside(self.workspace, rel_path)
        if not target.exists():
            raise FileNotFoundError(f"no file {rel_path!r} in the sandbox workspace")
        if not target.is_file():
            raise SandboxRequestError(f"path {rel_path!r} is not a regular file")
        size = target.stat().st_size
        with open(target, "rb") as fh:
            data = fh.read(max_bytes)
        text = data.decode("utf-8", errors="replace")
        if size > max_bytes:
            text += f"\n[... truncated: the file has {size} bytes, showing the first {max_bytes} ...]"
        return text

    def list_files(self) -> list[str]:
        """Every regular file in the workspace, relative and sorted (TMPDIR's content excluded)."""
        self._check_open()
        found = []
        for dirpath, dirnames, filenames in os.walk(self.workspace):
            rel_dir = os.path.relpath(dirpath, self.workspace)
            if rel_dir == ".":
                dirnames[:] = [d for d in dirnames if d != TMP_DIRNAME]
            for name in filenames:
                rel = os.path.normpath(os.path.join(rel_dir, name))
                if os.path.isfile(os.path.join(dirpath, name)) and not os.path.islink(os.path.join(dirpath, name)):
                    found.append(rel)
        return sorted(found)

    async def close(self) -> None:
        """Kill leftover processes and delete the workspace. Safe to call twice, and never raises:
        what cannot be removed is logged and listed by `leaked_sandbox_dirs()`. The removal runs
        on a worker thread, so a workspace of 100k files does not stall the event loop."""
        if self._closed:
            return
        self._closed = True
        try:
            self._backend.sweep()
        except Exception as exc:  # noqa: BLE001 — still delete the directory
            log.error("killing the leftovers of sandbox %s failed: %s", self.sandbox_id, exc)
        await asyncio.to_thread(remove_tree, self.base)

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else str(self.workspace)
        return f"Sandbox(backend={self.backend!r}, isolated={self.isolated}, workspace={state})"


def _make_base_dir() -> str:
    import tempfile

    base = tempfile.mkdtemp(prefix="forgerl-sandbox-")
    os.chmod(base, 0o711)  # a sandbox uid may traverse to its workspace, but not list siblings
    return base
