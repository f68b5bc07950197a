"""Bubblewrap backend: a fresh mount, PID, network, IPC and UTS namespace per command.

The new root holds only read-only system paths (/usr and its /bin, /lib symlinks, a few /etc
files the loader and coreutils need), the interpreter and venv read-only at their host paths,
private /proc, /dev and /tmp, and the workspace read-write at /workspace. /root, /home, /work and
every other sandbox's workspace simply do not exist there. The network namespace has only a
loopback of its own, so a host server on 127.0.0.1 is unreachable.

Two ways in, depending on who we are:
- root (the usual container case): bwrap runs privileged without a user namespace, keeps only
  CAP_SETUID/SETGID, and `setpriv` drops to the sandbox's own throw-away uid before the command
  runs: RLIMIT_NPROC then counts just this sandbox, and nothing inside can signal the host.
- not root: bwrap creates a user namespace; the kernel counts RLIMIT_NPROC per namespace.
Rlimits are set by `prlimit` as the last step before the command, so they bind only the command.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from forgerl.envs.sandbox.base import Backend, python_roots, sandbox_env
from forgerl.envs.sandbox.hiding import ETC_FILES as _ETC_FILES
from forgerl.envs.sandbox.hiding import HiddenPath
from forgerl.envs.sandbox.limits import Limits
from forgerl.envs.sandbox.process import Spawn, kill_uid

INNER_WORKSPACE = "/workspace"
_MB = 1024 * 1024
_HIDDEN_DIR_BYTES = 4096  # an empty mask: nothing is ever written into it (it is read-only)


def system_mounts() -> list[str]:
    """bwrap options that expose the read-only system: /usr plus the top-level /bin, /lib ...
    entries as the host has them (symlinks into /usr on merged-/usr systems, directories otherwise)."""
    args = ["--ro-bind", "/usr", "/usr"]
    dests = [f"/etc/{name}" for name in _ETC_FILES if os.path.exists(f"/etc/{name}")] + python_roots()
    for parent in sorted({str(p) for d in dests for p in Path(d).parents if str(p) != "/"}):
        args += ["--perms", "0755", "--dir", parent]  # bwrap would create them 0700 otherwise
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = f"/{top}"
        if os.path.islink(host):
            args += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            args += ["--ro-bind", host, host]
    for dest in dests:
        args += ["--ro-bind", dest, dest]
    return args


def hiding_mounts(hidden: tuple[HiddenPath, ...]) -> list[str]:
    """bwrap options masking `hidden` (after the system mounts, which they cover): an empty
    read-only tmpfs over each directory, /dev/null over each file."""
    args: list[str] = []
    for item in hidden:
        if item.is_dir:
            args += ["--perms", "0555", "--size", str(_HIDDEN_DIR_BYTES), "--tmpfs", item.path,
                     "--remount-ro", item.path]
        else:
            args += ["--ro-bind", "/dev/null", item.path]
    return args


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


class BwrapBackend(Backend):
    name = "bwrap"

    @property
    def inner_workspace(self) -> str:
        return INNER_WORKSPACE

    def namespace_args(self, limits: Limits) -> list[str]:
        args = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--die-with-parent", "--new-session", "--hostname", "sandbox"]
        if not limits.network:
            args.append("--unshare-net")
        if self.uid is None:
            args.append("--unshare-user")
            args += ["--cap-drop", "ALL"]
        else:
            args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        return args

    def inner_prefix(self, cwd: str, limits: Limits) -> list[str]:
        """Drop to the sandbox uid (when root), enter `cwd` and set rlimits, right before the
        command. The chdir comes after the uid switch: root without CAP_DAC_OVERRIDE may not
        enter the sandbox uid's 0700 workspace."""
        prefix: list[str] = []
        if self.uid is not None:
            prefix += ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                       "--no-new-privs", "--"]
        return prefix + ["/usr/bin/env", f"--chdir={cwd}", "prlimit", *limits.prlimit_args(), "--"]

    def spawn(self, argv: list[str], cwd_rel: str, limits: Limits, run_id: str = "") -> Spawn:
        env = sandbox_env(INNER_WORKSPACE, self.sandbox_id, run_id)
        # the private /tmp first: the interpreter or venv may live under the host's /tmp (a CI
        # clone), and a later tmpfs would hide its bind mount. Its size is capped (`--size`,
        # bubblewrap >= 0.5): a tmpfs is host RAM. bwrap cannot cap its inodes.
        cmd = [bwrap_path() or "bwrap", *self.namespace_args(limits),
               "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(limits.tmp_mb * _MB), "--tmpfs", "/tmp", *system_mounts(),
               *hiding_mounts(self.hidden),
               "--bind", str(self.workspace), INNER_WORKSPACE, "--chdir", "/", "--clearenv"]
        for key, value in env.items():
            cmd += ["--setenv", key, value]
        cmd += ["--", *self.inner_prefix(self.inner_cwd(cwd_rel), limits), *argv]
        return Spawn(argv=cmd, env={"PATH": "/usr/bin:/bin"})

    def sweep(self, run_id: str | None = None) -> None:
        # A run's PID namespace dies with its init, so a run leaves nothing; at close the uid
        # sweep is insurance for a bwrap killed mid-setup.
        if run_id is None and self.uid is not None:
            kill_uid(self.uid)
