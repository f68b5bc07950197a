"""Checks a command runs on its inputs before it loads a model, binds a port or creates a directory,
so that a mistake costs a second and leaves nothing behind (a half-made run directory would block
the corrected command). Each raises ConfigError with what was wrong and what to do.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from pathlib import Path

from forgerl.envs.base import family_info
from forgerl.errors import ConfigError
from forgerl.plugins import plugin_hint


def _registry_error(exc: KeyError) -> ConfigError:
    """A registry's "unknown ..." KeyError as a ConfigError, its plug-in sentence moved to the hint."""

    message = str(exc.args[0]) if exc.args else str(exc)
    hint = plugin_hint()
    if message.endswith(hint):
        return ConfigError(message.removesuffix(hint).rstrip("; "), hint=f"for {hint}")
    return ConfigError(message)


def check_env(name: str, difficulty: Sequence[int] | None = None) -> None:
    """The task family is registered (built-in or plug-in) and has each of the requested difficulties."""

    try:
        family = family_info(name)
    except KeyError as exc:
        raise _registry_error(exc) from None
    wrong = [d for d in difficulty or () if d not in family.difficulties]
    if wrong:
        raise ConfigError(f"family {name!r} has no difficulty {wrong[0]}; its difficulties are "
                          f"{list(family.difficulties)}", hint="set difficulty to a list of those levels")


def check_chat_format(name: str) -> None:
    """The chat format is registered (built-in or plug-in)."""
    from forgerl.chat import get_format  # heavy: forgerl.chat, kept out of forgerl --help

    try:
        get_format(name)
    except KeyError as exc:
        raise _registry_error(exc) from None


def check_model(name: str) -> None:
    """`name` is a built-in model, a Hugging Face directory, or a run reference (RUN, RUN:best,
    RUN:step_N) whose checkpoint exists and verifies: what load_policy would accept, without loading."""
    from forgerl.model.loading import (  # heavy: forgerl.model.loading, kept out of forgerl --help
        BUILTIN_MODELS,
        default_policy_dir,
        resolve_model_dir,
    )

    if name == "default":
        default_policy_dir()
        return
    if name == "tiny-random":
        return
    path = Path(resolve_model_dir(name))
    if not path.is_dir():
        raise ConfigError(f"model {name!r} is neither a built-in model ({', '.join(BUILTIN_MODELS)}), a run "
                          "(RUN, RUN:best, RUN:step_N) nor a Hugging Face model directory",
                          hint="check the path; forgerl never downloads from a hub")
    if not (path / "config.json").is_file():
        raise ConfigError(f"{path} has no config.json, so it is not a Hugging Face model directory",
                          hint="point --model at a checkpoint directory or a training run")


def check_new_run_dir(run_dir: str | Path) -> None:
    """A new run may start in `run_dir`: it is not a file and holds no run yet."""
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run directory {path} is a file", hint="choose another --run-dir")
    if (path / "store.sqlite").exists():
        raise ConfigError(f"{path} already holds a run",
                          hint="pass --resume to continue it, or choose another --run-dir")


def check_port_free(host: str, port: int) -> None:
    """Nothing listens on host:port yet (checked before a model is loaded; the server binds later,
    so a race with another process remains possible and is reported by the same error style)."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is out of range", hint="pass --port between 1 and 65535 (0: any free port)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve host {host!r} ({exc.strerror})",
                          hint="pass --host as an address this machine owns, e.g. 127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is already in use",
                                  hint="stop the process that holds it, or pass another --port") from None
            if exc.errno in (errno.EADDRNOTAVAIL, errno.EACCES):
                raise ConfigError(f"cannot bind {host}:{port} ({exc.strerror})",
                                  hint="pass a --host this machine owns and a --port you may use (>= 1024)") from None
            raise
