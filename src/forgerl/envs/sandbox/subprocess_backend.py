"""The last resort: a plain subprocess with rlimits, used only when no namespace tool works.

It is NOT isolated: the command sees the host's filesystem (whatever its uid may read) and the
network. What still holds: the wall clock (the process group is killed), CPU/memory/file-size/
process rlimits, the output cap, and cleanup of leftovers. When we are root the command runs as
the sandbox's own throw-away uid, so it cannot read root-only files (/etc/shadow, /root), cannot
signal host processes, and RLIMIT_NPROC counts only its processes; when we are not root it runs
as us (RLIMIT_NPROC then counts all our processes, so it is raised by how many we already run).
Creating one logs a warning and emits `SandboxNotIsolatedWarning`; every observation says so.
"""

from __future__ import annotations

import logging
import os
import resource
import warnings

from forgerl.envs.sandbox.base import Backend, sandbox_env
from forgerl.envs.sandbox.limits import Limits
from forgerl.envs.sandbox.process import RUN_ENV, Spawn, _proc_ids, _uid_of, kill_marked, kill_uid

log = logging.getLogger("forgerl.sandbox")


class SandboxNotIsolatedWarning(UserWarning):
    """A sandbox is running commands without namespace isolation."""


def _processes_of(uid: int) -> int:
    return sum(1 for pid in _proc_ids() if _uid_of(pid) == uid)


class SubprocessBackend(Backend):
    name = "subprocess"
    isolated = False
    can_hide = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        message = (
            "forgerl sandbox backend 'subprocess' is NOT isolated: commands see the host filesystem "
            "and network; only rlimits, the wall clock and cleanup apply. Install bubblewrap "
            "(scripts/install_system_deps.sh) for real isolation."
        )
        log.warning(message)
        warnings.warn(message, SandboxNotIsolatedWarning, stacklevel=4)

    @property
    def inner_workspace(self) -> str:
        return str(self.workspace.resolve())

    def spawn(self, argv: list[str], cwd_rel: str, limits: Limits, run_id: str = "") -> Spawn:
        rlimits = limits.rlimits()
        if self.uid is None:  # shared uid: leave room for the processes we already run
            soft, hard = rlimits[resource.RLIMIT_NPROC]
            mine = _processes_of(os.getuid())
            rlimits[resource.RLIMIT_NPROC] = (soft + mine, hard + mine)

        def set_limits() -> None:  # runs in the child, after the uid switch
            for which, (soft, hard) in rlimits.items():
                resource.setrlimit(which, (soft, hard))

        kwargs: dict = {"preexec_fn": set_limits}
        if self.uid is not None:
            kwargs.update(user=self.uid, group=self.uid, extra_groups=[])
        return Spawn(argv=argv, env=sandbox_env(self.inner_workspace, self.sandbox_id, run_id),
                     cwd=self.inner_cwd(cwd_rel), popen_kwargs=kwargs)

    def sweep(self, run_id: str | None = None) -> None:
        if run_id is not None:
            kill_marked(run_id, RUN_ENV)
        elif self.uid is not None:
            kill_uid(self.uid)
        else:
            kill_marked(self.sandbox_id)
