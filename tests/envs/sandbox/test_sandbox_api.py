"""The host-side API: files in and out, path escapes refused, output capping, cleanup, errors."""

from __future__ import annotations

import pytest

from forgerl.envs.sandbox import Limits, available_backend, create_sandbox
from forgerl.errors import SandboxError

pytestmark = pytest.mark.anyio


async def test_files_written_before_and_by_commands_are_listed_and_readable(isolated_backend):
    async with create_sandbox({"src/main.py": "print(6 * 7)"}, backend=isolated_backend) as sb:
        res = await sb.run("python3 src/main.py > out.txt && mkdir -p sub && echo hi > sub/h.txt")
        assert res.ok(), res.observation()
        assert sb.read_file("out.txt").strip() == "42"
        assert sb.list_files() == ["out.txt", "src/main.py", "sub/h.txt"]
        res = await sb.run("cat h.txt", cwd="sub", stdin="ignored")
        assert res.stdout == "hi\n"
        res = await sb.run(["python3", "-c", "import sys; print(sys.stdin.read().upper())"], stdin="abc")
        assert res.stdout.strip() == "ABC"


async def test_path_escapes_are_refused(isolated_backend):
    async with create_sandbox(backend=isolated_backend) as sb:
        for bad in ("../x", "../../etc/passwd", "/etc/passwd", "a/../../b", ""):
            with pytest.raises(SandboxError):
                sb.write_file(bad, "x")
            with pytest.raises(SandboxError):
                sb.read_file(bad)
        with pytest.raises(SandboxError, match="escapes"):
            await sb.run("ls", cwd="../..")
        planted = await sb.run("ln -s /etc/passwd link && ln -s / rootlink")
        assert planted.ok(), planted.observation()
        with pytest.raises(SandboxError, match="escapes"):
            sb.read_file("link")
        with pytest.raises(SandboxError, match="escapes"):
            sb.write_file("rootlink/tmp/owned.txt", "x")
        with pytest.raises(FileNotFoundError):
            sb.read_file("missing.txt")


async def test_output_over_the_limit_is_truncated_with_a_note(isolated_backend):
    async with create_sandbox(limits=Limits(max_output_bytes=1000), backend=isolated_backend) as sb:
        res = await sb.run(["python3", "-c", "print('x' * 200_000); print('THE-END')"])
        assert res.ok() and res.output_truncated
        assert len(res.stdout) < 1200 and "THE-END" in res.stdout and "bytes omitted" in res.stdout
        assert "output was longer than the limit" in res.observation()
        flood = await sb.run("yes", limits=Limits(max_output_bytes=1000, wall_s=20))
        assert flood.killed_reason is not None and "output flood" in flood.killed_reason
        assert flood.duration_s < 10


async def test_workspace_is_deleted_on_close_even_after_an_error(isolated_backend):
    sb = create_sandbox({"a.txt": "a"}, backend=isolated_backend)
    with pytest.raises(RuntimeError):
        async with sb:
            await sb.run("echo x > b.txt")
            raise RuntimeError("rollout crashed")
    assert not sb.workspace.exists() and not sb.base.exists()
    await sb.close()  # idempotent
    with pytest.raises(SandboxError, match="closed"):
        await sb.run("echo hi")


async def test_missing_workspace_is_an_infrastructure_error(isolated_backend):
    import shutil

    async with create_sandbox(backend=isolated_backend) as sb:
        shutil.rmtree(sb.workspace)
        with pytest.raises(SandboxError, match="missing"):
            await sb.run("echo hi")


def test_bad_arguments_get_clear_errors():
    with pytest.raises(SandboxError, match="unknown sandbox backend 'docker'"):
        create_sandbox(backend="docker")
    with pytest.raises(SandboxError, match="Limits"):
        create_sandbox(limits={"wall_s": 1})  # type: ignore[arg-type]


async def test_empty_command_is_refused():
    async with create_sandbox() as sb:
        with pytest.raises(SandboxError, match="empty command"):
            await sb.run("   ")


def test_an_isolated_backend_works_here():
    assert available_backend() in ("bwrap", "unshare"), (
        "no isolating sandbox backend works on this machine: run scripts/install_system_deps.sh")


async def test_an_interpreter_under_the_hosts_tmp_stays_visible(isolated_backend, monkeypatch, tmp_path_factory):
    """A CI clone may keep its venv under /tmp: the sandbox's private /tmp must not hide it."""
    import forgerl.envs.sandbox.base as base
    import forgerl.envs.sandbox.bwrap as bwrap
    import forgerl.envs.sandbox.unshare_backend as unshare_backend

    fake_root = tmp_path_factory.mktemp("venv-under-tmp")
    assert str(fake_root).startswith("/tmp/")
    (fake_root / "marker.txt").write_text("visible")
    fake_root.chmod(0o755)
    for parent in list(fake_root.parents)[:-2]:  # keep the path walkable by the sandbox uid
        parent.chmod(parent.stat().st_mode | 0o755)
    roots = base.python_roots() + [str(fake_root)]
    for module in (bwrap, unshare_backend):
        monkeypatch.setattr(module, "python_roots", lambda: roots)
    async with create_sandbox(backend=isolated_backend) as sb:
        res = await sb.run(f"cat {fake_root}/marker.txt")
        assert res.stdout == "visible", res.observation()
