"""Where swe-js runs code: the swe sandbox rules (forgerl.envs.swe._sandbox), plus the JavaScript
answer keys masked: the pinned npm install (data/swe_js) and any other copy of a task package the
sandbox's read-only system mounts expose (npm bundles its own `semver` and `ms` under
/usr/lib/node_modules). An agent that could `require` a bug-free copy could paste the fix.
"""

from __future__ import annotations

import functools
import glob
import logging
import os

from forgerl.envs.sandbox import BACKENDS, Sandbox, available_backend, create_sandbox
from forgerl.envs.swe._sandbox import ALLOW_UNHIDDEN_ENV, UNHIDDEN_NOTE, make_limits, pristine_paths, unhidden_allowed
from forgerl.envs.swe_js.packages import NPM_DIR, PACKAGES, SUITES_DIR
from forgerl.errors import SandboxError

log = logging.getLogger("forgerl.swe_js")
NODE_MODULE_ROOTS = ("/usr/lib/node_modules", "/usr/local/lib/node_modules", "/usr/share/nodejs", "/usr/lib/nodejs")


@functools.cache
def js_pristine_paths() -> tuple[str, ...]:
    """Host paths no swe-js sandbox may read: the swe ones, the npm install, the hidden suites
    and every installed copy of a task package under the system's node_modules roots."""
    paths = [*pristine_paths(), str(NPM_DIR.parent), str(SUITES_DIR)]
    for root in NODE_MODULE_ROOTS:
        for package in PACKAGES:
            paths += glob.glob(f"{root}/{package.name}") + glob.glob(f"{root}/**/node_modules/{package.name}", recursive=True)
    return tuple(sorted({os.path.realpath(p) for p in paths}))


def new_sandbox(files: dict[str, str], wall_s: float) -> Sandbox:
    """A sandbox with the answer keys masked (see swe's `new_sandbox` for the refusal rules)."""
    backend = available_backend()
    if BACKENDS[backend].can_hide:
        return create_sandbox(files, limits=make_limits(wall_s), backend=backend, hidden_paths=js_pristine_paths())
    if not unhidden_allowed():
        raise SandboxError(
            f"swe-js needs a sandbox that can hide the bug-free packages, but only the unisolated {backend!r} "
            "backend works here. Install bubblewrap (scripts/install_system_deps.sh) or allow user namespaces; "
            f"to run anyway (debugging only, rewards untrustworthy) set {ALLOW_UNHIDDEN_ENV}=1"
        )
    log.warning("swe-js: %s", UNHIDDEN_NOTE)
    return create_sandbox(files, limits=make_limits(wall_s), backend=backend)
