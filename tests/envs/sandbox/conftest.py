"""Shared helpers for the sandbox tests: which isolated backends work here, and a process finder."""

from __future__ import annotations

import os
import secrets

import pytest

from forgerl.envs.sandbox import backend_works

# Backends that isolate and actually start on this machine. CI installs bubblewrap
# (scripts/install_system_deps.sh); test_backends.py fails loudly if none works.
ISOLATED_BACKENDS = [b for b in ("bwrap", "unshare") if backend_works(b)] or ["bwrap"]


@pytest.fixture(params=ISOLATED_BACKENDS)
def isolated_backend(request) -> str:
    return request.param


def unique_sleep() -> tuple[str, str]:
    """A `sleep N` whose argument no other process on the machine uses: (command, marker)."""
    n = f"{1000 + secrets.randbelow(9000)}.{secrets.randbelow(10**6):06d}"
    return f"sleep {n}", n


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains `marker`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                if marker.encode() in fh.read():
                    found.append(int(name))
        except OSError:
            pass
    return found


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio through anyio's pytest plugin (installed with httpx)."""
    return "asyncio"
