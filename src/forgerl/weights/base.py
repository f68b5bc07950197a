"""What every weight transport is: `push(state_dict, version) -> PushResult`, `restore()`, `close()`.

A transport moves the trainer's new weights to where rollouts are sampled and says whether they
landed. One file per transport: inprocess.py (the built-in engine in this process), http_push.py
(`forgerl serve` in another process), vllm_reload.py (a vLLM server's reload endpoint); a
collective broadcast would be one more file. Pushes never raise for a failed push: the result says
so and the stale-weights alarm (alarm.py) shouts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from forgerl.errors import ConfigError


@dataclass
class PushResult:
    version: int
    ok: bool
    engine_version: int | None  # what the engine reports after the push (None: unreachable)
    bytes: int = 0
    save_s: float = 0.0  # writing the safetensors file
    request_s: float = 0.0  # the server loading, draining and applying it
    total_s: float = 0.0
    server: dict[str, Any] | None = None  # the server's timings
    error: str | None = None


def default_shared_dir() -> Path:
    """Shared memory where the OS has it (a tmpfs: the file never touches a disk); else the temp dir."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
    return base / f"forgerl-weights-{os.getpid()}"


def write_atomically(state_dict: Mapping[str, Any], path: Path, *, fsync: bool = False) -> None:
    """Save `state_dict` as safetensors at `path` so no reader ever sees a partial file: written
    under a hidden temporary name in the same directory, then renamed into place. `fsync` flushes
    the data first (shared storage: a server on another host must not read a renamed but
    still-unwritten file after a crash of the writer)."""
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, str(tmp))
    if fsync:
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(tmp, path)


TRANSPORTS = ("shm", "dir")
"""The transports between a trainer and `forgerl serve` engines (`vllm-nccl` is vLLM's own, GPU only)."""


def check_transport(transport: str, urls: Sequence[str], weights_dir: str | os.PathLike[str] | None) -> None:
    """Refuse a transport that cannot reach its engines, saying what to use instead."""
    if transport not in TRANSPORTS:
        raise ConfigError(f"unknown weight transport {transport!r}: use 'shm' (engines on this host) or 'dir' "
                          "(engines on other hosts, through shared storage)")
    if transport == "shm":
        remote = [u for u in urls if not is_local_url(u)]
        if remote:
            raise ConfigError(f"weight transport 'shm' writes to this host's /dev/shm, which the engine(s) at "
                              f"{', '.join(remote)} cannot read: use transport = 'dir' with weights_dir on storage "
                              "those hosts mount (and start each server with --weights-dir)")
    elif weights_dir is None:
        raise ConfigError("weight transport 'dir' needs weights_dir: a directory on storage every engine host "
                          "mounts (each server started with --weights-dir pointing at its mount of it)")


def is_local_url(url: str) -> bool:
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "127.0.0.1", "::1", "0.0.0.0") or host.startswith("127.")



@runtime_checkable
class WeightTransport(Protocol):
    """Moves versioned weights from the trainer to an engine; all or nothing per push."""

    def push(self, state_dict: Mapping[str, Any], version: int) -> PushResult:
        """Send `state_dict` as policy `version`; `ok` only when the engine serves it now."""
        ...

    def restore(self) -> Any:
        """After the engine restarted: load the newest pushed weights again (no-op when none)."""
        ...

    def close(self) -> None:
        """Release files and connections the transport holds."""
        ...
