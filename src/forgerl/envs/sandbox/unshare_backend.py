"""util-linux `unshare` backend: the same picture as bwrap, built by a short shell script.

For hosts with util-linux but no bubblewrap. `unshare` gives new mount, PID, IPC, UTS and network
namespaces (plus a user namespace when we are not root); a setup script, running as PID 1 of the
new PID namespace, builds a tmpfs root under the sandbox's base directory holding read-only /usr,
the interpreter and venv, a few /etc files and device nodes, private /proc and /tmp, and the
workspace at /workspace, then `chroot`s into it and drops privileges with `setpriv` (to the
sandbox uid when root; to an empty capability bounding set otherwise) before `prlimit` and the
command. When PID 1 exits the kernel kills everything else in the namespace.
"""

from __future__ import annotations

import os
import shlex
import shutil

from forgerl.envs.sandbox.base import Backend, python_roots, sandbox_env
from forgerl.envs.sandbox.hiding import ETC_FILES as _ETC_FILES
from forgerl.envs.sandbox.hiding import HiddenPath
from forgerl.envs.sandbox.limits import Limits
from forgerl.envs.sandbox.process import Spawn, kill_uid

INNER_WORKSPACE = "/workspace"
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def _bind_ro(src: str, dst: str) -> list[str]:
    make = f"mkdir -p {dst}" if os.path.isdir(src) else f"mkdir -p $(dirname {dst}) && touch {dst}"
    return [make, f"mount --rbind {src} {dst}", f"mount -o remount,bind,ro {dst}"]


def _mask(root: str, item: HiddenPath) -> list[str]:
    """Shell lines masking one hidden path under the new root (see hiding.py)."""
    dst = f"{root}{shlex.quote(item.path)}"
    if item.is_dir:
        return [f"mount -t tmpfs -o ro,size=4k,nr_inodes=16,mode=0555 forgerl-hidden {dst}"]
    return [f"mount --bind /dev/null {dst}", f"mount -o remount,bind,ro {dst}"]


def setup_script(root: str, workspace: str, tmp_mb: int = 64, tmp_inodes: int = 20_000,
                 hidden: tuple[HiddenPath, ...] = ()) -> str:
    """Shell lines (run as root of the new namespaces) that build the sandbox root at `root`; its
    /tmp is a tmpfs of `tmp_mb` MiB and `tmp_inodes` inodes (host RAM while the command runs);
    `hidden` paths are masked after the system and interpreter mounts."""
    q = shlex.quote
    r = q(root)
    lines = ["set -e", f"mount -t tmpfs -o mode=755 sandbox-root {r}",
             # the private /tmp before any bind: the interpreter or venv may live under the host's
             # /tmp (a CI clone), and a tmpfs mounted later would hide it
             f"mkdir -p {r}/tmp", f"mount -t tmpfs -o size={int(tmp_mb)}m,nr_inodes={int(tmp_inodes)},mode=1777 sandbox-tmp {r}/tmp"]
    lines += _bind_ro("/usr", f"{r}/usr")
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = f"/{top}"
        if os.path.islink(host):
            lines.append(f"ln -s {q(os.readlink(host))} {r}/{top}")
        elif os.path.isdir(host):
            lines += _bind_ro(host, f"{r}/{top}")
    for name in _ETC_FILES:
        if os.path.exists(f"/etc/{name}"):
            lines += _bind_ro(f"/etc/{name}", f"{r}/etc/{name}")
    for path in python_roots():
        lines += _bind_ro(q(path), f"{r}{q(path)}")
    for item in hidden:
        lines += _mask(r, item)
    lines += [f"mkdir -p {r}/proc {r}/dev {r}{INNER_WORKSPACE}",
              f"mount -t proc proc {r}/proc",
              f"ln -s /proc/self/fd {r}/dev/fd"]
    for dev in _DEVICES:
        lines += [f"touch {r}/dev/{dev}", f"mount --bind /dev/{dev} {r}/dev/{dev}"]
    lines.append(f"mount --bind {q(workspace)} {r}{INNER_WORKSPACE}")
    return "\n".join(lines)


def unshare_path() -> str | None:
    return shutil.which("unshare")


class UnshareBackend(Backend):
    name = "unshare"

    @property
    def inner_workspace(self) -> str:
        return INNER_WORKSPACE

    def spawn(self, argv: list[str], cwd_rel: str, limits: Limits, run_id: str = "") -> Spawn:
        root = self.base / f"root-{run_id or 'probe'}"  # one mount point per concurrent run
        root.mkdir(exist_ok=True)
        flags = ["--mount", "--pid", "--fork", "--kill-child", "--ipc", "--uts", "--propagation", "private"]
        if not limits.network:
            flags.append("--net")
        if self.uid is None:
            flags += ["--user", "--map-root-user"]
            drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--"]
        else:
            drop = ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                    "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--"]
        env = sandbox_env(INNER_WORKSPACE, self.sandbox_id, run_id)
        inner = ["/usr/bin/env", "-i", f"--chdir={self.inner_cwd(cwd_rel)}",
                 *(f"{k}={v}" for k, v in env.items()),
                 *drop, "prlimit", *limits.prlimit_args(), "--", *argv]
        # Not `exec chroot`: unshare cannot re-raise a child's fatal signal (SIGXCPU, SIGXFSZ) and
        # would turn it into exit 1; the shell reports it as 128+N, which explain_limits reads.
        script = (setup_script(str(root), str(self.workspace), limits.tmp_mb, limits.max_workspace_files, self.hidden)
                  + f"\nset +e\nchroot {shlex.quote(str(root))} \"$@\"\nexit $?")
        cmd = [unshare_path() or "unshare", *flags, "--", "/bin/sh", "-c", script, "sandbox-setup", *inner]
        return Spawn(argv=cmd, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})

    def sweep(self, run_id: str | None = None) -> None:
        if run_id is None and self.uid is not None:
            kill_uid(self.uid)
