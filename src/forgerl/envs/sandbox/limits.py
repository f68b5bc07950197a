"""What a sandboxed command may use (`Limits`) and what the agent is told about it (`ExecResult`).

Limits are enforced by the kernel (rlimits, namespaces) and by the runner (wall clock, output cap);
the kernel does not say *which* limit stopped a process, so `explain_limits` infers it from the
exit status and the usual error texts (SIGXCPU, SIGXFSZ, "MemoryError", "Cannot fork"). The agent
gets that explanation as one plain line in the observation: a model that hit the memory limit
should read "memory limit 256 MB", not guess from a bare exit code 137.
"""

from __future__ import annotations

import math
import resource
import signal
from dataclasses import dataclass

from forgerl.errors import SandboxError

_MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-command resource limits. Every limit applies to the whole process tree of one command."""

    wall_s: float = 10.0
    """Wall-clock seconds before the command and all its processes are killed."""
    cpu_s: float = 10.0
    """CPU seconds per process (RLIMIT_CPU): SIGXCPU at the limit, SIGKILL one second later."""
    memory_mb: int = 1024
    """Address space per process (RLIMIT_AS), in MiB: allocations beyond it fail."""
    max_procs: int = 64
    """Processes the sandbox user may run at once (RLIMIT_NPROC): stops fork bombs."""
    max_output_bytes: int = 64_000
    """Bytes kept per stream (stdout, stderr); the rest is cut out of the middle with a note."""
    max_file_mb: int = 64
    """Largest file a process may write (RLIMIT_FSIZE), in MiB."""
    network: bool = False
    """Allow network access. Only the unisolated subprocess backend cannot take it away."""
    max_workspace_mb: int = 512
    """Total MiB the workspace may hold (all files, TMPDIR included): a command that passes it is
    killed (envs/sandbox/quota.py), and the agent reads how much it holds and what the limits are."""
    max_workspace_files: int = 20_000
    """Files, directories and links the workspace may hold (inodes), enforced like the bytes."""
    tmp_mb: int = 64
    """Size of the private /tmp (bwrap, unshare): a tmpfs, i.e. host RAM for as long as the command
    runs. The unisolated subprocess backend has no private /tmp (TMPDIR points into the workspace)."""

    def __post_init__(self) -> None:
        checks = {
            "wall_s": self.wall_s > 0,
            "cpu_s": self.cpu_s > 0,
            "memory_mb": self.memory_mb >= 16,
            "max_procs": self.max_procs >= 2,
            "max_output_bytes": self.max_output_bytes >= 64,
            "max_file_mb": self.max_file_mb >= 1,
            "max_workspace_mb": self.max_workspace_mb >= 1,
            "max_workspace_files": self.max_workspace_files >= 16,
            "tmp_mb": self.tmp_mb >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise SandboxError(
                f"invalid sandbox limits {bad} in {self!r}: times must be > 0, memory_mb >= 16, "
                "max_procs >= 2 (the shell itself is a process), max_output_bytes >= 64, max_file_mb >= 1, "
                "max_workspace_mb >= 1, max_workspace_files >= 16, tmp_mb >= 1"
            )

    def rlimits(self) -> dict[int, tuple[int, int]]:
        """The kernel limits as {RLIMIT_*: (soft, hard)}. CPU: SIGXCPU at the soft limit, then a
        one-second grace before the hard limit's SIGKILL."""
        cpu = max(1, math.ceil(self.cpu_s))
        return {
            resource.RLIMIT_CPU: (cpu, cpu + 1),
            resource.RLIMIT_AS: (self.memory_mb * _MB, self.memory_mb * _MB),
            resource.RLIMIT_NPROC: (self.max_procs, self.max_procs),
            resource.RLIMIT_FSIZE: (self.max_file_mb * _MB, self.max_file_mb * _MB),
            resource.RLIMIT_CORE: (0, 0),
        }

    def prlimit_args(self, nproc: int | None = None) -> list[str]:
        """The same limits as util-linux `prlimit` options (used inside namespaced sandboxes)."""
        rl = self.rlimits()
        if nproc is not None:
            rl[resource.RLIMIT_NPROC] = (nproc, nproc)
        names = {
            resource.RLIMIT_CPU: "--cpu",
            resource.RLIMIT_AS: "--as",
            resource.RLIMIT_NPROC: "--nproc",
            resource.RLIMIT_FSIZE: "--fsize",
            resource.RLIMIT_CORE: "--core",
        }
        return [f"{names[r]}={soft}:{hard}" for r, (soft, hard) in rl.items()]


@dataclass
class ExecResult:
    """The outcome of one command. A failing command or one stopped by a limit is a normal
    result the agent sees; only infrastructure failures raise `SandboxError`."""

    exit_code: int | None
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    output_truncated: bool = False
    killed_reason: str | None = None
    isolated: bool = True
    """False when the command ran in the unisolated subprocess fallback (said in the observation)."""

    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.killed_reason is None

    def observation(self) -> str:
        """Agent-facing text: exit code, a one-line explanation of a limit, then the output."""
        lines = []
        if not self.isolated:
            lines.append("[warning: this sandbox is NOT isolated (plain subprocess fallback)]")
        code = "none (killed)" if self.exit_code is None else str(self.exit_code)
        lines.append(f"exit code: {code}")
        if self.killed_reason:
            lines.append(f"stopped: {self.killed_reason}")
        if self.output_truncated:
            lines.append("note: output was longer than the limit; the middle was cut out (marked below)")
        for name, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            if text:
                lines.append(f"{name}:\n{text.rstrip(chr(10))}")
            elif name == "stdout":
                lines.append("stdout: (empty)")
        return "\n".join(lines)


class CappedBuffer:
    """Keeps the first and last `cap // 2` bytes of a stream and counts the rest, so a command
    that prints forever costs bounded memory and the agent still sees how it started and ended."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.cap // 2 - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            keep = self.cap - self.cap // 2
            if len(self.tail) > keep:
                del self.tail[: len(self.tail) - keep]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.head) + len(self.tail)

    def text(self) -> str:
        if not self.truncated:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", errors="replace")
        omitted = self.total - len(self.head) - len(self.tail)
        head = bytes(self.head).decode("utf-8", errors="replace")
        tail = bytes(self.tail).decode("utf-8", errors="replace")
        return f"{head}\n[... {omitted} bytes omitted: output limit {self.cap} bytes ...]\n{tail}"


_MEMORY_MARKERS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")
_NO_SPACE_MARKERS = ("No space left on device", "Disk quota exceeded")
_FORK_MARKERS = ("Cannot fork", "can't fork", "fork: Resource temporarily unavailable",
                 "BlockingIOError: [Errno 11] Resource temporarily unavailable", "fork failed")


def _signal_of(exit_code: int | None) -> int | None:
    """The signal that ended the process: negative return codes (direct child) or 128+N (a shell or
    bwrap reporting its child's death)."""
    if exit_code is None:
        return None
    if exit_code < 0:
        return -exit_code
    if 128 < exit_code < 128 + 65:
        return exit_code - 128
    return None


def explain_limits(limits: Limits, exit_code: int | None, stderr: str, *, timed_out: bool,
                   output_flood: bool, quota: str | None = None) -> str | None:
    """One line naming each limit that (most likely) stopped the command, or None. `quota`: the
    workspace quota message when the watchdog stopped the command or found it over (quota.py)."""
    reasons: list[str] = []
    if quota:
        reasons.append(quota)
    sig = _signal_of(exit_code)
    if timed_out:
        reasons.append(f"wall-clock timeout {limits.wall_s:g}s (the command and all its processes were killed)")
    if output_flood:
        reasons.append(f"output flood: over 8 MB of output (only {limits.max_output_bytes} bytes are kept), "
                       "the command was killed")
    if sig == signal.SIGXCPU or "CPU time limit exceeded" in stderr:
        reasons.append(f"cpu time limit {limits.cpu_s:g}s")
    if sig == signal.SIGXFSZ or "File too large" in stderr or "File size limit exceeded" in stderr:
        reasons.append(f"file size limit {limits.max_file_mb} MB (no file may grow beyond it)")
    if any(m in stderr for m in _MEMORY_MARKERS):
        reasons.append(f"memory limit {limits.memory_mb} MB (allocations beyond it fail)")
    if any(m in stderr for m in _NO_SPACE_MARKERS) and not quota:
        reasons.append(f"no space left: /tmp holds at most {limits.tmp_mb} MB (write big files to the workspace, "
                       f"which holds at most {limits.max_workspace_mb} MB)")
    if any(m in stderr for m in _FORK_MARKERS):
        reasons.append(f"too many processes (limit {limits.max_procs}; new processes could not start)")
    return "; ".join(reasons) or None
