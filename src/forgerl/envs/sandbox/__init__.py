"""Isolated per-rollout workspaces for model-written code and shell commands.

```python
async with create_sandbox({"main.py": "print(1)"}) as sb:
    result = await sb.run("python3 main.py", limits=Limits(wall_s=5))
    observation = result.observation()      # what the agent reads
```

Backends, best first: `bwrap` (bubblewrap), `unshare` (util-linux), `subprocess` (rlimits only,
NOT isolated: loudly warned). `available_backend()` probes them once per process by actually
starting a trivial sandbox, because "installed" is not "works" inside a container.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import tempfile
from pathlib import Path

from forgerl.envs.sandbox.base import Backend, Sandbox, leaked_sandbox_dirs, new_sandbox_uid, remove_tree
from forgerl.envs.sandbox.bwrap import BwrapBackend, bwrap_path
from forgerl.envs.sandbox.hiding import HiddenPath, resolve_hidden
from forgerl.envs.sandbox.limits import ExecResult, Limits
from forgerl.envs.sandbox.subprocess_backend import SandboxNotIsolatedWarning, SubprocessBackend
from forgerl.envs.sandbox.unshare_backend import UnshareBackend, unshare_path
from forgerl.errors import SandboxError

__all__ = ["ExecResult", "HiddenPath", "Limits", "Sandbox", "SandboxNotIsolatedWarning", "available_backend",
           "backend_works", "create_sandbox", "leaked_sandbox_dirs", "remove_tree", "BACKENDS"]

log = logging.getLogger("forgerl.sandbox")

BACKENDS: dict[str, type[Backend]] = {
    "bwrap": BwrapBackend,
    "unshare": UnshareBackend,
    "subprocess": SubprocessBackend,
}
_TOOLS = {"bwrap": bwrap_path, "unshare": unshare_path}


@functools.cache
def backend_works(name: str) -> bool:
    """Start a real sandbox with backend `name` running `python3 -c` and check what it printed."""
    if name == "subprocess":
        return True
    if name not in BACKENDS:
        raise SandboxError(f"unknown sandbox backend {name!r}: choose one of auto, {', '.join(BACKENDS)}")
    if _TOOLS[name]() is None:
        return False
    base = Path(tempfile.mkdtemp(prefix="forgerl-sandbox-probe-"))
    try:
        ws = base / "workspace"
        ws.mkdir()
        uid = new_sandbox_uid()  # probe exactly the way real sandboxes will run
        if uid is not None:
            os.chmod(base, 0o711)
            os.chown(ws, uid, uid)
        backend = BACKENDS[name](base, ws, uid, "probe")
        spawn = backend.spawn(["python3", "-c", "print('sandbox-ok')"], ".", Limits(wall_s=20))
        proc = subprocess.run(spawn.argv, env=spawn.env, capture_output=True, timeout=30, text=True)
        ok = proc.returncode == 0 and proc.stdout.strip() == "sandbox-ok"
        if not ok:
            log.info("sandbox backend %s does not work here: rc=%s %s", name, proc.returncode, proc.stderr[-500:])
        return ok
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("sandbox backend %s does not work here: %s", name, exc)
        return False
    finally:
        remove_tree(base)


def available_backend() -> str:
    """The best backend that actually works on this machine: "bwrap", "unshare" or "subprocess"."""
    for name in ("bwrap", "unshare"):
        if backend_works(name):
            return name
    return "subprocess"


def create_sandbox(files: dict[str, str] | None = None, *, limits: Limits = Limits(),
                   backend: str = "auto", hidden_paths: tuple[str, ...] | list[str] = ()) -> Sandbox:
    """A new sandbox with `files` (relative path -> text) written into its workspace. `limits`
    are the default for every `run`. `backend`: "auto" | "bwrap" | "unshare" | "subprocess".
    `hidden_paths`: host paths (directories or files) that must not be readable inside, e.g. a
    reference solution installed in the venv (hiding.py); the subprocess backend cannot hide
    anything, so asking it to is a SandboxError rather than a silent leak."""
    if not isinstance(limits, Limits):
        raise SandboxError(f"limits must be a forgerl.envs.sandbox.Limits, got {type(limits).__name__}")
    name = available_backend() if backend == "auto" else backend
    if name not in BACKENDS:
        raise SandboxError(f"unknown sandbox backend {backend!r}: choose one of auto, {', '.join(BACKENDS)}")
    if not backend_works(name):
        raise SandboxError(
            f"sandbox backend {name!r} does not work on this machine (missing tool or namespaces not "
            "permitted): run scripts/install_system_deps.sh, or use backend='auto' to pick one that works"
        )
    hidden = resolve_hidden(hidden_paths)
    if hidden_paths and not BACKENDS[name].can_hide:
        raise SandboxError(
            f"sandbox backend {name!r} cannot hide host paths ({len(hidden_paths)} asked, e.g. {hidden_paths[0]!r}): "
            "it runs commands on the host filesystem. Install bubblewrap (scripts/install_system_deps.sh) "
            "or make user namespaces available so bwrap or unshare works"
        )
    sandbox = Sandbox(BACKENDS[name], limits, hidden)
    try:
        for rel_path, text in (files or {}).items():
            sandbox.write_file(rel_path, text)
    except BaseException:
        remove_tree(sandbox.base)
        raise
    return sandbox
