"""Where the app and the browser run: two bubblewrap sandboxes joined by a loopback bridge.

    host (trusted)                 browser sandbox (uid B, own PID+net ns)   app sandbox (uid A)
    Playwright driver ──CDP pipe── chromium ── 127.0.0.1:8000 ── relay ┐
                                                    /bridge/app.sock (host-made)
                                       (listening fd) relay ── 127.0.0.1:8000 ── app server ┘

- Playwright stays on the host and launches `chromium.sh` as Chromium's executable: the script
  execs bwrap, which execs Chromium, so the `--remote-debugging-pipe` fds 3/4 pass straight through.
- The app (agent-written, hostile) runs in a second sandbox with another throw-away uid and PID
  namespace: it cannot see Chromium's or the driver's processes, cannot open their /proc/PID/fd,
  cannot signal them, and cannot see the evidence directory (it is bound nowhere).
- Both sandboxes have `--unshare-net`: each sees only its own loopback; the relays (relay.py)
  carry HTTP between them through one unix socket the host creates: the app's sandbox inherits
  its listening descriptor, the browser's sandbox connects to it through a read-only bind. The
  app can write nowhere but its own workspace (whose disk quota is policed) and its capped /tmp.
- Limits: the app server gets the sandbox's rlimits (address space, processes, CPU); Chromium
  reserves terabytes of address space, so instead `MemoryWatch` sums the proportional set size
  (PSS: shared pages counted once) of the browser sandbox's processes and kills the largest
  renderer above the limit (that page crashes: the app's fault), and RLIMIT_NPROC caps its
  processes and threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from forgerl.envs.appdev import relay
from forgerl.envs.appdev.rubric import ServerSpec
from forgerl.envs.sandbox import Limits, backend_works, create_sandbox, quota
from forgerl.envs.sandbox.base import Sandbox, new_sandbox_uid, remove_tree, sandbox_env
from forgerl.envs.sandbox.bwrap import BwrapBackend, bwrap_path, system_mounts
from forgerl.envs.sandbox.process import kill_uid
from forgerl.errors import VerifierError

PORT = 8000
"""The app's port inside both sandboxes (each has its own loopback, so a fixed port is safe)."""
_MB = 1024 * 1024
_RELAY_CODE = Path(relay.__file__).read_text(encoding="utf-8")


@dataclass(frozen=True)
class BrowserLimits:
    """What one verification may cost."""

    wall_s: float = 90.0
    """Wall-clock seconds for a whole verification; items not reached by then fail."""
    action_timeout_s: float = 3.0
    """Per browser action (click, fill, an expectation's wait)."""
    load_timeout_s: float = 6.0
    """Per page load (goto, reload)."""
    start_timeout_s: float = 15.0
    """For the app server to answer and for Chromium to start."""
    memory_mb: int = 1536
    """Summed PSS of the browser sandbox's processes; above it the largest renderer is killed."""
    max_procs: int = 2048
    """RLIMIT_NPROC of the browser sandbox's uid (Chromium's threads count too)."""
    app_memory_mb: int = 512
    """The app server's address-space limit (RLIMIT_AS, per process)."""
    app_max_procs: int = 64
    tmp_mb: int = 256
    """The browser sandbox's private /tmp (Chromium's profile and shared memory live there)."""

    def __post_init__(self) -> None:
        small = [n for n in ("wall_s", "action_timeout_s", "load_timeout_s", "start_timeout_s") if getattr(self, n) <= 0]
        if small or self.memory_mb < 128 or self.max_procs < 64 or self.app_memory_mb < 64:
            raise VerifierError(f"invalid BrowserLimits {self!r}: times must be > 0, memory_mb >= 128, "
                                "max_procs >= 64, app_memory_mb >= 64")


def chromium_path() -> str | None:
    """Chromium's real binary: $FORGERL_CHROMIUM, else Debian's /usr/lib/chromium/chromium (not
    the /usr/bin/chromium shell launcher, which reads /etc files the sandbox does not have)."""
    for candidate in (os.environ.get("FORGERL_CHROMIUM"), "/usr/lib/chromium/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_isolation() -> str:
    """The Chromium binary, or VerifierError when it or a working bwrap sandbox is missing."""
    chrome = chromium_path()
    if chrome is None:
        raise VerifierError("no Chromium found: apt-get install -y chromium (Debian), or set FORGERL_CHROMIUM")
    if bwrap_path() is None or not backend_works("bwrap"):
        raise VerifierError("the AppDev verifier needs a working bubblewrap sandbox (bwrap) to isolate the app and "
                            "the browser: run scripts/install_system_deps.sh, or allow user namespaces")
    return chrome


def _drop_to(uid: int | None) -> list[str]:
    if uid is None:
        return []
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs", "--"]


@dataclass
class AppServer:
    """The app's sandbox: the verifier's static server or the app's own python server, behind the
    app-side relay. `log` has the server's output (for the gate's evidence)."""

    sandbox: Sandbox
    bridge: Path
    proc: asyncio.subprocess.Process
    log_path: Path
    quota_task: asyncio.Task | None = None
    over_quota: str = ""

    def log(self, max_chars: int = 2000) -> str:
        try:
            text = self.log_path.read_bytes()[-max_chars:].decode("utf-8", "replace")
        except OSError:
            return ""
        return text

    @property
    def exited(self) -> int | None:
        return self.proc.returncode

    async def wait_ready(self, timeout_s: float) -> bool:
        """True once a request through the bridge gets an HTTP answer from the app."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                return False
            if await asyncio.to_thread(self._probe):
                return True
            await asyncio.sleep(0.05)
        return False

    def _probe(self) -> bool:
        try:
            with relay.connect_unix(str(self.bridge / "app.sock"), timeout=2) as sock:
                sock.sendall(b"HEAD / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                return sock.recv(5).startswith(b"HTTP")
        except OSError:
            return False

    async def police_quota(self, limits: Limits) -> None:
        """Kill the server once its workspace grows past the sandbox's disk quota (a server
        writing files without end would fill the host's disk)."""
        start = await asyncio.to_thread(quota.measure, self.sandbox.workspace)
        usage = await quota.watch(self.sandbox.workspace, limits, start)
        self.over_quota = quota.quota_message(usage, limits, killed=True)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    async def close(self) -> None:
        if self.quota_task is not None:
            self.quota_task.cancel()
            with contextlib.suppress(BaseException):
                await self.quota_task
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5)
        await self.sandbox.close()


async def start_app(files: dict[str, str], server: ServerSpec, root: Path, limits: BrowserLimits) -> AppServer:
    """Write `files` into a fresh bwrap sandbox and start its server behind the app-side relay."""
    sandbox_limits = Limits(wall_s=limits.wall_s, cpu_s=limits.wall_s, memory_mb=limits.app_memory_mb,
                            max_procs=limits.app_max_procs, max_file_mb=16, max_workspace_mb=128)
    try:
        sandbox = create_sandbox(files, limits=sandbox_limits, backend="bwrap")
    except Exception as exc:
        raise VerifierError(f"could not create the app's sandbox: {exc}") from exc
    try:
        bridge = root / "bridge"
        bridge.mkdir(mode=0o711)  # the host's: neither sandbox may write here
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(str(bridge / "app.sock"))
            os.chmod(bridge / "app.sock", 0o666)  # the browser's sandbox connects as its own uid
            listener.listen(64)
            backend = BwrapBackend(sandbox.base, sandbox.workspace, sandbox.uid, sandbox.sandbox_id)
            argv = ["python3", "-c", _RELAY_CODE, "app", server.kind, str(PORT), server.script, str(listener.fileno())]
            spawn = backend.spawn(argv, ".", sandbox_limits)
            log_path = root / "app.log"
            with open(log_path, "wb") as log_fh:
                proc = await asyncio.create_subprocess_exec(
                    *spawn.argv, env=spawn.env, stdin=asyncio.subprocess.DEVNULL, stdout=log_fh, stderr=log_fh,
                    start_new_session=True, pass_fds=(listener.fileno(),))
    except BaseException:
        await sandbox.close()
        raise
    app = AppServer(sandbox, bridge, proc, log_path)
    app.quota_task = asyncio.create_task(app.police_quota(sandbox_limits))
    return app


def browser_wrapper(root: Path, chrome: str, bridge: Path, limits: BrowserLimits) -> tuple[Path, int | None]:
    """Write the script Playwright launches as Chromium: it records its pid and execs bwrap ->
    (setpriv ->) prlimit -> sh, which starts the browser-side relay and execs Chromium."""
    uid = new_sandbox_uid()
    ns = BwrapBackend(root, root, uid, "browser").namespace_args(Limits(network=False))
    mounts = ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(limits.tmp_mb * _MB),
              "--tmpfs", "/tmp", *system_mounts()]
    for extra in ("/etc/fonts", os.path.dirname(os.path.realpath(chrome))):
        if os.path.isdir(extra) and not extra.startswith("/usr/"):
            mounts += ["--ro-bind", extra, extra]
    env = sandbox_env("/tmp", "browser")
    env["TMPDIR"] = "/tmp"  # Chromium's singleton socket and profile go there
    env["FORGERL_RELAY"] = _RELAY_CODE
    setenv = [a for k, v in env.items() for a in ("--setenv", k, v)]
    inner = (f'python3 -c "$FORGERL_RELAY" browser {PORT} /tmp/.relay-ready & '
             'while [ ! -e /tmp/.relay-ready ]; do sleep 0.01; done; exec "$0" "$@"')
    cmd = [bwrap_path() or "bwrap", *ns, *mounts, "--ro-bind", str(bridge), "/bridge", "--chdir", "/tmp",
           "--clearenv", *setenv, "--", *_drop_to(uid), "/usr/bin/env", "prlimit",
           f"--nproc={limits.max_procs}", "--core=0", "--fsize=268435456", "--", "/bin/sh", "-c", inner,
           os.path.realpath(chrome)]
    script = root / "chromium.sh"
    script.write_text(f"#!/bin/sh\necho $$ > {shlex.quote(str(root / 'browser.pid'))}\n"
                      f"exec {shlex.join(cmd)} \"$@\"\n")
    script.chmod(0o700)
    return script, uid


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree(root_pid: int) -> list[int]:
    """`root_pid` and all its descendants (host pids)."""
    kids, out, todo = _children(), [], [root_pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def pss_mb(pid: int) -> float:
    """Proportional set size of one process in MiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def _is_renderer(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"--type=renderer" in fh.read()
    except OSError:
        return False


@dataclass
class MemoryWatch:
    """Polls the browser sandbox's summed PSS; above `limit_mb` kills the largest renderer (the
    page that grew crashes, so its item fails), and remembers the peak."""

    pid_file: Path
    limit_mb: int
    interval_s: float = 0.2
    peak_mb: float = 0.0
    kills: list[str] = field(default_factory=list)

    def sample(self) -> float:
        try:
            root_pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return 0.0
        sizes = {pid: pss_mb(pid) for pid in tree(root_pid)}
        total = sum(sizes.values())
        self.peak_mb = max(self.peak_mb, total)
        if total > self.limit_mb:
            renderers = [p for p in sizes if _is_renderer(p)]
            if renderers:
                victim = max(renderers, key=sizes.__getitem__)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(victim, signal.SIGKILL)
                self.kills.append(f"browser memory {total:.0f} MB > limit {self.limit_mb} MB: "
                                  f"killed the largest page ({sizes[victim]:.0f} MB)")
        return total

    async def run(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(self.interval_s)


def sweep_uid(uid: int | None) -> None:
    if uid is not None:
        kill_uid(uid)


def new_root() -> Path:
    """A private host directory for one verification (wrapper, bridge, logs)."""
    root = Path(tempfile.mkdtemp(prefix="forgerl-appdev-"))
    os.chmod(root, 0o711)  # the sandbox uids traverse to the bridge, nothing more
    return root


def remove_root(root: Path) -> None:
    remove_tree(root)
