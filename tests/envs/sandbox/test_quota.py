"""Totals are capped: workspace bytes and files (a watchdog kills the command that passes them),
and the private /tmp's size (a tmpfs, i.e. host RAM), on every backend that runs here."""

from __future__ import annotations

import os

import pytest

from forgerl.envs.sandbox import Limits, create_sandbox
from forgerl.envs.sandbox.quota import measure
from forgerl.errors import SandboxError

pytestmark = pytest.mark.anyio

MB = 1024 * 1024
ALL_BACKENDS = ["bwrap", "unshare", "subprocess"]


@pytest.fixture(params=ALL_BACKENDS)
def any_backend(request):
    from forgerl.envs.sandbox import backend_works

    if not backend_works(request.param):
        pytest.skip(f"backend {request.param} does not start on this machine")
    return request.param


def test_new_limits_are_validated_with_a_message():
    with pytest.raises(SandboxError, match="max_workspace_files"):
        Limits(max_workspace_files=1)
    with pytest.raises(SandboxError, match="tmp_mb"):
        Limits(tmp_mb=0)
    assert Limits().max_workspace_mb == 512 and Limits().max_workspace_files == 20_000 and Limits().tmp_mb == 64


def test_measure_counts_blocks_files_and_hard_links_once(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "big").write_bytes(os.urandom(2 * MB))
    os.link(tmp_path / "a" / "big", tmp_path / "hard")
    (tmp_path / "link").symlink_to("/usr")  # not followed
    usage = measure(tmp_path)
    assert usage.files == 4 and 2 * MB <= usage.bytes < 2 * MB + 64 * 1024 and usage.complete
    early = measure(tmp_path, stop_bytes=MB)
    assert not early.complete and early.over(MB, 100)


def test_measure_flags_a_tree_too_deep_to_walk(tmp_path):
    deep(str(tmp_path), 500)  # 5,500-byte paths: over PATH_MAX, so files could hide below
    usage = measure(tmp_path)
    assert usage.too_deep and usage.over(10**12, 10**9)


def deep(root, depth):
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("dddddddddd", dir_fd=fd)
            child = os.open("dddddddddd", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def run_sandbox(backend, limits, files=None):
    import warnings

    from forgerl.envs.sandbox import SandboxNotIsolatedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxNotIsolatedWarning)
        return create_sandbox(files, limits=limits, backend=backend)


FILL_BYTES = """
import os
os.makedirs('fill', exist_ok=True)
block = os.urandom(1 << 20)
for i in range(1000):
    with open(f'fill/{i}', 'wb') as fh:
        fh.write(block)
print('wrote everything')
"""

FILL_FILES = """
import os
os.makedirs('many', exist_ok=True)
for i in range(100_000):
    open(f'many/{i}', 'w').close()
print('wrote everything')
"""


async def test_workspace_bytes_quota_kills_the_command_with_a_clear_observation(any_backend):
    limits = Limits(wall_s=30, cpu_s=30, max_workspace_mb=32, max_file_mb=4)
    async with run_sandbox(any_backend, limits) as sb:
        res = await sb.run(["python3", "-c", FILL_BYTES])
        held = measure(sb.workspace)
        assert "wrote everything" not in res.stdout
        assert res.exit_code is None and "sandbox disk quota exceeded" in res.observation()
        assert "limits: 32 MB, 20000 files" in res.killed_reason
        # what slips past before the kill: at most one poll interval's writing
        assert held.bytes < 32 * MB + 400 * MB, f"{held.bytes / MB:.0f} MB held"
        print(f"\n[{any_backend}] bytes quota 32 MB: {held.bytes / MB:.0f} MB held after the kill")
        cleanup = await sb.run("rm -rf fill && echo cleaned")  # shrinking an over-quota workspace is allowed
        assert cleanup.ok() and "cleaned" in cleanup.stdout


async def test_workspace_file_count_quota_kills_the_command(any_backend):
    limits = Limits(wall_s=30, cpu_s=30, max_workspace_files=2000)
    async with run_sandbox(any_backend, limits) as sb:
        res = await sb.run(["python3", "-c", FILL_FILES])
        held = measure(sb.workspace)
        assert "wrote everything" not in res.stdout and res.exit_code is None
        assert "sandbox disk quota exceeded" in res.killed_reason and "2000 files" in res.killed_reason
        assert held.files < 2000 + 30_000, f"{held.files} files held"
        print(f"\n[{any_backend}] files quota 2000: {held.files} files held after the kill")


async def test_a_command_that_ends_over_quota_between_walks_is_reported(any_backend):
    limits = Limits(max_workspace_mb=1)
    async with run_sandbox(any_backend, limits) as sb:
        res = await sb.run(["python3", "-c", "open('x', 'wb').write(b'1' * (3 << 20))"])
        assert res.exit_code == 0 and not res.ok()
        assert "sandbox disk quota exceeded" in res.killed_reason and "ended over it" in res.killed_reason


@pytest.mark.parametrize("backend", ["bwrap", "unshare"])
async def test_private_tmp_is_capped(backend):
    from forgerl.envs.sandbox import backend_works

    if not backend_works(backend):
        pytest.skip(f"backend {backend} does not start on this machine")
    async with create_sandbox(limits=Limits(tmp_mb=8), backend=backend) as sb:
        res = await sb.run("dd if=/dev/zero of=/tmp/big bs=1M count=32")
        assert res.exit_code != 0
        assert "no space left: /tmp holds at most 8 MB" in res.killed_reason, res.observation()
        small = await sb.run("dd if=/dev/zero of=/tmp/ok bs=1M count=4 && echo fits")
        assert small.ok() and "fits" in small.stdout
