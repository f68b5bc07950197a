"""Ray, the optional extra behind `[distributed] launcher = "ray"`: import it with a clear error
when it is missing, and join the cluster once per process. Shared by the rank launcher
(train/ray_launch.py) and the engine replicas it places (engine/ray_replicas.py); nothing else in
forgerl imports Ray."""

from __future__ import annotations

import os
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


__all__ = ["join_ray", "require_ray"]
