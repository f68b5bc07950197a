"""Ray, the optional extra behind `[distributed] launcher = "ray"`: import it with a clear error
when it is missing, join the cluster once per process, and start an actor's child process so that
it dies with the actor and takes signals. Shared by the rank launcher
(train/ray_launch.py) and the engine replicas it places (engine/ray_replicas.py); nothing else in
forgerl imports Ray."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from forgerl.errors import ConfigError


def require_ray() -> Any:
    """The `ray` module, or a ConfigError naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ConfigError("[distributed] launcher = \"ray\" needs Ray, which is not installed in this environment",
                          hint="pip install 'forgerl[ray]' (on every node of the cluster), or set "
                               "[distributed] launcher = \"torchrun\"") from None
    return ray


def join_ray() -> Any:
    """`ray`, connected: to $RAY_ADDRESS (the launcher sets it for its ranks), else to the cluster
    `ray start` made on this machine, else to a local instance started here (ray.init's own order)."""
    ray = require_ray()
    if not ray.is_initialized():
        try:
            ray.init(log_to_driver=True)
        except (ConnectionError, RuntimeError) as exc:
            address = os.environ.get("RAY_ADDRESS") or "the cluster `ray start` made on this machine"
            raise ConfigError(f"could not join the Ray cluster at {address}: {exc}",
                              hint="check it with `ray status`; a cluster with token authentication also needs "
                                   "RAY_AUTH_MODE=token (and its token) here; unset RAY_ADDRESS to start a local "
                                   "Ray instance instead") from None
    return ray


def child_of_actor() -> None:
    """`preexec_fn` of a process a Ray actor starts (a rank, an engine replica): SIGKILL it when the
    actor dies, so a lost actor leaves nothing behind; and take SIGINT/SIGTERM as a fresh process
    does (a Ray worker ignores or blocks them, and a child inherits that), so Ctrl-C reaches rank 0's
    checkpoint-and-stop and a replica stops on SIGTERM."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


__all__ = ["child_of_actor", "join_ray", "require_ray"]
