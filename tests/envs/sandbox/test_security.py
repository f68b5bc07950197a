"""The attacks a model may try from inside a sandbox. Each must come back as an ExecResult the
agent can read, while the host (this test process) and other sandboxes keep working."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from forgerl.envs.sandbox import Limits, create_sandbox

from .conftest import processes_with, unique_sleep

SMALL = Limits(wall_s=5, cpu_s=5, memory_mb=256, max_procs=32, max_output_bytes=4000, max_file_mb=4)

pytestmark = pytest.mark.anyio


async def test_host_secrets_and_repo_are_invisible(isolated_backend):
    repo = os.path.dirname(os.path.abspath(__file__))  # a real file of this checkout under /work
    host_root_entries = [e for e in os.listdir("/root") if e != ".pyenv"] if os.access("/root", os.R_OK) else []
    async with create_sandbox(limits=SMALL, backend=isolated_backend) as sb:
        assert sb.isolated
        shadow = await sb.run("cat /etc/shadow")
        assert shadow.exit_code != 0 and "No such file" in shadow.stderr
        repo_read = await sb.run(["cat", os.path.join(repo, "test_security.py")])
        assert repo_read.exit_code != 0 and repo_read.stdout == ""
        listing = await sb.run("ls -a /root /home /work/main 2>&1; true")
        for entry in host_root_entries:
            assert entry not in listing.stdout.split(), f"/root/{entry} is visible inside the sandbox"
        assert "src" not in listing.stdout.split() and "pyproject.toml" not in listing.stdout


async def test_network_is_unreachable_even_to_a_host_loopback_server(isolated_backend):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2); print('CONNECTED')"
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # control: reachable from the host
        async with create_sandbox(limits=SMALL, backend=isolated_backend) as sb:
            res = await sb.run(["python3", "-c", probe])
        assert "CONNECTED" not in res.stdout and res.exit_code != 0
        assert "Error" in res.observation()  # the agent sees why (connection refused / unreachable)
    finally:
        server.close()


async def test_fork_bomb_is_contained_and_reported(isolated_backend):
    limits = Limits(wall_s=2, max_procs=24, memory_mb=256)
    async with create_sandbox(limits=limits, backend=isolated_backend) as sb:
        res = await sb.run("bomb() { bomb | bomb & }; bomb; sleep 30")
        # Either the wall clock ends it, or the process cap is hit so fast that the shell cannot
        # even start `sleep` and exits (seen under load): both are containment, and both say why.
        assert res.killed_reason is not None
        assert ("wall-clock timeout" in res.killed_reason and res.timed_out) or (
            "too many processes" in res.killed_reason and not res.ok()), res
        after = await sb.run("echo still-alive")
        assert after.ok() and after.stdout.strip() == "still-alive"
    assert processes_with("bomb()") == []


async def test_fork_limit_is_explained_when_forks_fail(isolated_backend):
    limits = Limits(wall_s=5, max_procs=8)
    async with create_sandbox(limits=limits, backend=isolated_backend) as sb:
        res = await sb.run("for i in $(seq 40); do sleep 3 & done; echo done-forking")
        assert res.killed_reason is not None and "too many processes (limit 8" in res.killed_reason
        assert "too many processes" in res.observation()


async def test_memory_limit_stops_a_50_gb_allocation(isolated_backend):
    async with create_sandbox(limits=SMALL, backend=isolated_backend) as sb:
        res = await sb.run(["python3", "-c", "b = bytearray(50 * 1024**3); print('allocated')"])
    assert "allocated" not in res.stdout and res.exit_code != 0
    assert res.killed_reason is not None and "memory limit 256 MB" in res.killed_reason


async def test_file_size_limit_stops_a_10_gb_write(isolated_backend):
    async with create_sandbox(limits=SMALL, backend=isolated_backend) as sb:
        res = await sb.run("dd if=/dev/zero of=big.bin bs=1M count=10240")
        size = (sb.workspace / "big.bin").stat().st_size
    assert size <= SMALL.max_file_mb * 2**20
    assert res.exit_code != 0 and res.killed_reason is not None and "file size limit 4 MB" in res.killed_reason


async def test_cpu_limit_stops_a_busy_loop(isolated_backend):
    limits = Limits(wall_s=8, cpu_s=1)
    async with create_sandbox(limits=limits, backend=isolated_backend) as sb:
        res = await sb.run(["python3", "-c", "while True: pass"])
    assert not res.timed_out and res.killed_reason is not None and "cpu time limit" in res.killed_reason


async def test_sleep_forever_times_out_and_the_whole_tree_dies(isolated_backend):
    sleep, marker = unique_sleep()
    async with create_sandbox(limits=Limits(wall_s=1), backend=isolated_backend) as sb:
        res = await sb.run(f"({sleep}) & {sleep} & {sleep}")
        assert res.timed_out and res.exit_code is None and "wall-clock timeout 1s" in res.observation()
        assert res.duration_s < 5
        assert processes_with(marker) == []


async def test_killing_the_parent_or_everything_does_not_touch_the_host(isolated_backend):
    async with create_sandbox(limits=SMALL, backend=isolated_backend) as sb, \
            create_sandbox(limits=SMALL, backend=isolated_backend) as other:
        res = await sb.run("kill -9 $PPID; kill -9 -1; echo after-kill")
        assert res.exit_code is not None or res.killed_reason is None  # a result came back
        assert os.getpid() > 0  # we are alive to assert
        assert (await sb.run("echo ok")).stdout.strip() == "ok"
        assert (await other.run("echo ok")).stdout.strip() == "ok"


async def test_background_process_does_not_survive_run_or_close(isolated_backend):
    sleep, marker = unique_sleep()
    async with create_sandbox(limits=SMALL, backend=isolated_backend) as sb:
        res = await sb.run(f"{sleep} & setsid {sleep} & echo left-behind")
        assert res.ok() and res.stdout.strip() == "left-behind" and res.duration_s < 3
        assert processes_with(marker) == []
    assert processes_with(marker) == []


async def test_concurrent_sandboxes_cannot_see_each_other(isolated_backend):
    a = create_sandbox({"secret.txt": "alpha-secret"}, limits=SMALL, backend=isolated_backend)
    b = create_sandbox({"secret.txt": "beta-secret"}, limits=SMALL, backend=isolated_backend)
    async with a, b:
        peek_a, peek_b = await asyncio.gather(
            a.run(f"cat secret.txt; cat {b.workspace}/secret.txt; ls /tmp"),
            b.run(f"cat secret.txt; cat {a.workspace}/secret.txt; ls /tmp"),
        )
        assert "alpha-secret" in peek_a.stdout and "beta-secret" not in peek_a.stdout
        assert "beta-secret" in peek_b.stdout and "alpha-secret" not in peek_b.stdout
        await a.run("echo from-a > note.txt")
        assert b.list_files() == ["secret.txt"]


async def test_inside_has_python_with_the_venv_and_home_tmp_in_the_workspace(isolated_backend):
    async with create_sandbox(limits=SMALL, backend=isolated_backend) as sb:
        res = await sb.run(["python3", "-c", "import os, tempfile, pydantic; "
                            "print(os.environ['HOME'], tempfile.gettempdir(), os.getcwd())"])
        assert res.ok(), res.observation()
        home, tmp, cwd = res.stdout.split()
        assert tmp.startswith(home + "/") and cwd == home
        write = await sb.run("echo x > /usr/evil 2>&1; echo x > /etc/evil 2>&1; echo done")
        assert "Read-only file system" in write.stderr and "Permission denied" in write.stderr
        assert not os.path.exists("/usr/evil")
