"""Masking host paths that a sandbox would otherwise see through its read-only system mounts.

A namespaced sandbox binds the interpreter's prefixes (the venv, the base Python) read-only, so
that `python3` there can import what is installed here. That also exposes whatever else lives in
them: for swe-bugfix, the bug-free original of the very package the agent is asked to fix, which
an agent could copy and no verifier could tell from a real fix. `hidden_paths` names such paths;
the namespaced backends mount an empty read-only tmpfs over each directory and /dev/null over each
file, after the system mounts, so neither content nor listing is reachable from inside (a masked
directory shows up empty, a masked file reads as empty).

Only paths that are actually visible inside are masked (a path outside every mounted root does
not exist there anyway; masking it would only create it). The unisolated subprocess backend sees
the whole host and cannot mask anything: creating it with hidden paths is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from forgerl.envs.sandbox.base import python_roots
from forgerl.errors import SandboxError

ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "nsswitch.conf")
"""The /etc entries both namespaced backends bind (the loader's and coreutils' needs)."""


@dataclass(frozen=True)
class HiddenPath:
    """One host path to mask inside the sandbox, at the same path there."""

    path: str
    is_dir: bool


def mounted_roots() -> list[str]:
    """The host paths a namespaced sandbox binds read-only (resolved): /usr, the top-level
    /bin, /lib ... directories that are not symlinks into /usr, a few /etc files, the interpreter."""
    roots = ["/usr"]
    roots += [f"/{top}" for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
              if os.path.isdir(f"/{top}") and not os.path.islink(f"/{top}")]
    roots += [f"/etc/{name}" for name in ETC_FILES if os.path.exists(f"/etc/{name}")]
    roots += python_roots()
    return [os.path.realpath(root) for root in roots]


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def resolve_hidden(paths: tuple[str, ...] | list[str]) -> tuple[HiddenPath, ...]:
    """The masks to apply for `paths`: resolved (a symlink's target is what is reachable), only
    those that exist and lie under a mounted root, none inside another masked directory. Raises
    SandboxError for a relative path or one that would hide a mounted root itself (the sandbox's
    interpreter or system), which would leave a sandbox that cannot run anything."""
    roots = mounted_roots()
    found: dict[str, bool] = {}
    for raw in paths:
        if not isinstance(raw, str) or not os.path.isabs(raw):
            raise SandboxError(f"hidden path {raw!r} is not an absolute path: name host paths as /abs/path")
        path = os.path.realpath(raw)
        if not os.path.lexists(path) or not any(_within(path, root) for root in roots):
            continue  # not visible inside the sandbox: nothing to mask
        covered = [root for root in roots if _within(root, path)]
        if covered:
            raise SandboxError(f"hidden path {raw!r} contains the sandbox's mounted {covered[0]!r} (the system or "
                               "the interpreter); hide directories inside it instead")
        found[path] = os.path.isdir(path)
    kept = sorted(p for p in found if not any(other != p and found[other] and _within(p, other) for other in found))
    return tuple(HiddenPath(p, found[p]) for p in kept)
