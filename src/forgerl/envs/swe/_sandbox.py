"""Where SWE tasks run code: the project sandbox (`forgerl.envs.sandbox`), behind two helpers so
the rest of this package names limits and hidden paths in one place.

Every swe sandbox (the agent's shell, the verifier's workers, the generation pipeline) masks the
answer key: the bug-free task packages as installed (their package directories, single-file
modules, compiled copies and dist-info, in this venv and in any other site directory the sandbox
mounts), forgerl's own package directory (the hidden suites) and the task data (each task's
original hunk). An agent that could read them could copy the fix, and no verifier can tell a
copied fix from a real one. Nothing honest needs them: the workspace holds the package copy that
is imported (it is first on sys.path), and the hidden suites never enter a sandbox (judge.py).

The unisolated subprocess backend cannot mask anything, so swe refuses to run there unless
FORGERL_SWE_ALLOW_UNHIDDEN=1 says the user accepts that (debugging on a machine without
namespaces); such episodes are then marked in the verdict's evidence ("unhidden"), and the
reward they give must not be trusted for training.
"""

from __future__ import annotations

import functools
import glob
import importlib.metadata
import importlib.util
import logging
import os
import re
import site
import sys
from pathlib import Path

import forgerl
from forgerl.envs.sandbox import BACKENDS, Limits, Sandbox, available_backend, create_sandbox
from forgerl.envs.sandbox.base import python_roots
from forgerl.envs.swe.packages import PACKAGES, Package
from forgerl.errors import SandboxError

log = logging.getLogger("forgerl.swe")

ALLOW_UNHIDDEN_ENV = "FORGERL_SWE_ALLOW_UNHIDDEN"
UNHIDDEN_NOTE = ("the sandbox could not hide the pristine packages (unisolated subprocess backend, "
                 f"{ALLOW_UNHIDDEN_ENV}=1): a copied fix scores like a real one")


def make_limits(wall_s: float, memory_mb: int = 1024) -> Limits:
    """Wall-clock and CPU seconds capped alike: test suites here are single-threaded."""
    return Limits(wall_s=wall_s, cpu_s=wall_s, memory_mb=memory_mb)


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def site_dirs() -> list[str]:
    """Every site directory a sandbox may see: this interpreter's, those of the mounted prefixes,
    and the system Pythons' under /usr (distribution packages such as python3-more-itertools)."""
    dirs = [*site.getsitepackages(), *sys.path]
    for prefix in ["/usr", "/usr/local", *python_roots()]:
        dirs += glob.glob(f"{prefix}/lib/python3*/site-packages") + glob.glob(f"{prefix}/lib/python3*/dist-packages")
        dirs += glob.glob(f"{prefix}/lib/python3/dist-packages")
    return sorted({os.path.realpath(d) for d in dirs if os.path.isdir(d)})


def _installed_copies(package: Package, site_dir: str) -> list[str]:
    """A package's files in one site directory: its package dir or module, their compiled copies
    next to other packages' (`__pycache__/<name>.*.pyc`), and its dist-info / egg-info."""
    name = package.import_name
    found = [os.path.join(site_dir, name), os.path.join(site_dir, f"{name}.py")]
    found += glob.glob(os.path.join(site_dir, "__pycache__", f"{glob.escape(name)}.*.pyc"))
    for entry in glob.glob(os.path.join(site_dir, "*.*-info")):
        stem = os.path.basename(entry).rsplit(".", 1)[0]
        if _normalized(stem.split("-")[0]) == _normalized(package.dist):
            found.append(entry)
    return [p for p in found if os.path.lexists(p)]


def _recorded_files(package: Package) -> list[str]:
    """What the installer recorded for the distribution (RECORD), so files outside the usual
    layout (a stray top-level module, data files) are hidden too."""
    try:
        dist = importlib.metadata.distribution(package.dist)
    except importlib.metadata.PackageNotFoundError:
        return []
    paths = []
    for file in dist.files or ():
        top = file.parts[0] if file.parts else ""
        if top == package.import_name or top.endswith((".dist-info", ".egg-info")):
            paths.append(str(dist.locate_file(top)))  # its own directories, whole
        elif len(file.parts) == 1 or top == "__pycache__":
            paths.append(str(dist.locate_file(file)))  # in a shared directory, file by file
    spec = importlib.util.find_spec(package.import_name)
    if spec is not None:
        paths += list(spec.submodule_search_locations or []) + ([spec.origin] if spec.origin else [])
    return paths


def forgerl_paths() -> list[str]:
    """forgerl's own answer keys: its package directory (the hidden suites) and the task data
    (each task's original code), wherever this install keeps them."""
    from forgerl.envs.swe import DEFAULT_TASKS, tasks_path  # cycle: forgerl.envs.swe imports this module

    return [str(Path(forgerl.__file__).resolve().parent), str(DEFAULT_TASKS.parent), str(tasks_path())]


@functools.cache
def pristine_paths() -> tuple[str, ...]:
    """Host paths no swe sandbox may read (see the module docstring)."""
    paths: list[str] = forgerl_paths()
    for package in PACKAGES:
        paths += _recorded_files(package)
        for site_dir in site_dirs():
            paths += _installed_copies(package, site_dir)
    return tuple(sorted({os.path.realpath(p) for p in paths if p}))


def unhidden_allowed() -> bool:
    return os.environ.get(ALLOW_UNHIDDEN_ENV, "").strip().lower() in ("1", "true", "yes")


def new_sandbox(files: dict[str, str], wall_s: float) -> Sandbox:
    """A sandbox with the answer keys masked; on a backend that cannot mask, a SandboxError that
    says how to get one that can (or, with the explicit opt-in, an unmasked one and a warning)."""
    backend = available_backend()
    if BACKENDS[backend].can_hide:
        return create_sandbox(files, limits=make_limits(wall_s), backend=backend, hidden_paths=pristine_paths())
    if not unhidden_allowed():
        raise SandboxError(
            f"swe-bugfix needs a sandbox that can hide the installed bug-free packages, but only the "
            f"unisolated {backend!r} backend works here, where an agent could copy the original code and "
            "score as if it had fixed the bug. Install bubblewrap (scripts/install_system_deps.sh) or allow "
            f"user namespaces; to run anyway (debugging only, rewards untrustworthy) set {ALLOW_UNHIDDEN_ENV}=1"
        )
    log.warning("swe-bugfix: %s", UNHIDDEN_NOTE)
    return create_sandbox(files, limits=make_limits(wall_s), backend=backend)
