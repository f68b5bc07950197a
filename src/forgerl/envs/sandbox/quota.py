"""Workspace totals: how many bytes and files a sandbox's workspace holds, and a watchdog that
stops a command the moment it pushes them past `Limits.max_workspace_mb` / `max_workspace_files`.

Why a watchdog and not the kernel: RLIMIT_FSIZE caps one file, not the sum (961 MB in 100k files
took seconds), and the kernel's own per-directory caps (project quotas, a loop-mounted image, a
host tmpfs) need root, a cooperating filesystem or RAM. Counting the tree is portable and works
the same for every backend. While a command runs, the workspace is walked on a worker thread every
`POLL_S` seconds (less often when a walk is slow, so the watchdog never costs more than a fifth of
one core); the walk stops as soon as a limit is passed. What can slip past before the kill is what
the command writes in one poll interval (tests/envs/sandbox/test_quota.py measures it).

Bytes are blocks actually allocated (a sparse file costs what it stores); a file with several hard
links counts once; symlinks are not followed. When a workspace is already over its quota at the
start of a command (the agent is cleaning up), the command may shrink it but not grow it.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from forgerl.envs.sandbox.limits import Limits

POLL_S = 0.1
"""Seconds between two walks of a running command's workspace (stretched for big workspaces)."""
_MB = 1024 * 1024


@dataclass(frozen=True)
class Usage:
    """What a workspace holds: allocated bytes and entries (files, directories, links)."""

    bytes: int
    files: int
    complete: bool = True
    """False when the walk stopped early at a limit: the true totals are at least these."""
    too_deep: bool = False
    """A directory nested so deep (paths over PATH_MAX) that it cannot be measured: counted as over
    the quota, or files could hide there."""

    def over(self, max_bytes: int, max_files: int) -> bool:
        return self.too_deep or self.bytes > max_bytes or self.files > max_files


def measure(root: Path | str, *, stop_bytes: int | None = None, stop_files: int | None = None) -> Usage:
    """Walk `root` without recursion or following links; stop early once past a stop value."""
    total_bytes = files = 0
    seen: set[tuple[int, int]] = set()
    stack = [str(root)]
    too_deep = False
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError as exc:
                        if exc.errno == errno.ENAMETOOLONG:
                            raise
                        continue  # deleted while we looked
                    files += 1
                    if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                        if (st.st_dev, st.st_ino) in seen:
                            continue
                        seen.add((st.st_dev, st.st_ino))
                    total_bytes += st.st_blocks * 512
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
                    if (stop_bytes is not None and total_bytes > stop_bytes) or \
                            (stop_files is not None and files > stop_files):
                        return Usage(total_bytes, files, complete=False)
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                too_deep = True
                if stop_bytes is not None or stop_files is not None:
                    return Usage(total_bytes, files, complete=False, too_deep=True)
            continue  # otherwise a directory we may not read or that vanished
    return Usage(total_bytes, files, too_deep=too_deep)


def quota_message(usage: Usage, limits: Limits, *, killed: bool) -> str:
    """The line the agent reads when its workspace is over quota."""
    what = "the command was killed" if killed else "the command ended over it"
    if usage.too_deep:
        return (f"sandbox disk quota exceeded: the workspace nests directories too deep to measure (paths over "
                f"{os.pathconf('/', 'PC_PATH_MAX')} bytes); {what}. Delete the deep tree (rm -rf) before writing more")
    least = "" if usage.complete else "at least "
    return (f"sandbox disk quota exceeded: the workspace holds {least}{usage.bytes / _MB:.0f} MB in {least}{usage.files} files "
            f"(limits: {limits.max_workspace_mb} MB, {limits.max_workspace_files} files); {what}. "
            "Delete files you do not need (large outputs, build artifacts) before writing more")


def allowed(limits: Limits, start: Usage) -> tuple[int, int]:
    """(bytes, files) a command may reach: the quota, or what the workspace already held when it
    was over the quota at the start (then it may shrink but not grow)."""
    if start.too_deep:  # nothing to compare with: the check after the command reports it
        return 2**62, 2**62
    return max(limits.max_workspace_mb * _MB, start.bytes), max(limits.max_workspace_files, start.files)


async def watch(root: Path, limits: Limits, start: Usage) -> Usage:
    """Return (the usage that broke it) once the workspace passes its quota; runs until cancelled."""
    if start.too_deep:  # nothing to compare with: the check after the command reports it
        await asyncio.Event().wait()
    max_bytes, max_files = allowed(limits, start)
    while True:
        began = time.monotonic()
        usage = await asyncio.to_thread(measure, root, stop_bytes=max_bytes, stop_files=max_files)
        if usage.over(max_bytes, max_files):
            return usage
        walk_s = time.monotonic() - began
        await asyncio.sleep(max(POLL_S, 4 * walk_s))
