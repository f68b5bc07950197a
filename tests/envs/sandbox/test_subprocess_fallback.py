"""The unisolated fallback: loudly flagged, limits still enforced as far as rlimits allow."""

from __future__ import annotations

import socket

import pytest

from forgerl.envs.sandbox import Limits, SandboxNotIsolatedWarning, create_sandbox

from .conftest import processes_with, unique_sleep

SMALL = Limits(wall_s=1, cpu_s=5, memory_mb=256, max_procs=32, max_output_bytes=1000, max_file_mb=4)

pytestmark = pytest.mark.anyio


def _fallback(**kwargs):
    with pytest.warns(SandboxNotIsolatedWarning, match="NOT isolated"):
        return create_sandbox(backend="subprocess", **kwargs)


async def test_fallback_is_flagged_everywhere():
    async with _fallback(limits=SMALL) as sb:
        assert sb.isolated is False and sb.backend == "subprocess"
        res = await sb.run("echo hi")
        assert res.ok() and not res.isolated and "NOT isolated" in res.observation()


async def test_fallback_enforces_wall_clock_on_the_whole_tree():
    sleep, marker = unique_sleep()
    async with _fallback(limits=SMALL) as sb:
        res = await sb.run(f"{sleep} & setsid {sleep} & {sleep}")
        assert res.timed_out and "wall-clock timeout 1s" in res.killed_reason
        assert processes_with(marker) == []


async def test_fallback_cleans_up_background_processes():
    sleep, marker = unique_sleep()
    async with _fallback(limits=SMALL) as sb:
        res = await sb.run(f"{sleep} & echo left")
        assert res.ok() and res.duration_s < 3
        assert processes_with(marker) == []


async def test_fallback_enforces_memory_file_size_and_output_limits():
    async with _fallback(limits=SMALL) as sb:
        mem = await sb.run(["python3", "-c", "bytearray(50 * 1024**3)"])
        assert "memory limit 256 MB" in (mem.killed_reason or "")
        big = await sb.run("dd if=/dev/zero of=big.bin bs=1M count=10240", limits=Limits(max_file_mb=2))
        assert "file size limit 2 MB" in (big.killed_reason or "")
        assert (sb.workspace / "big.bin").stat().st_size <= 2 * 2**20
        out = await sb.run("seq 1 100000")
        assert out.output_truncated and "bytes omitted" in out.stdout


async def test_fallback_really_is_not_network_isolated():
    """The reason the fallback is flagged: a host loopback server is reachable from it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        async with _fallback(limits=SMALL) as sb:
            res = await sb.run(["python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', {port})); print('CONNECTED')"])
        assert "CONNECTED" in res.stdout
    finally:
        server.close()
