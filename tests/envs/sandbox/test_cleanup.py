"""Cleanup that never raises and never leaks: a tree too deep for `shutil.rmtree`, directories
the agent made read-only, and a removal that truly fails (recorded, not raised)."""

from __future__ import annotations

import os
import stat

import pytest

from forgerl.envs.sandbox import create_sandbox, leaked_sandbox_dirs, remove_tree

pytestmark = pytest.mark.anyio

DEPTH = 3000


def deep_tree(root: str, depth: int = DEPTH) -> None:
    """`root/d/d/.../d/f`, `depth` levels: deeper than PATH_MAX, so built relative to dir fds."""
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


def test_remove_tree_handles_a_tree_too_deep_for_rmtree(tmp_path):
    import shutil

    target = tmp_path / "deep"
    target.mkdir()
    deep_tree(str(target))
    with pytest.raises(RecursionError):  # the failure the fallback exists for
        shutil.rmtree(target, ignore_errors=True)
    assert remove_tree(target) is True
    assert not target.exists()


def test_remove_tree_handles_read_only_directories(tmp_path):
    target = tmp_path / "ro"
    (target / "a" / "b").mkdir(parents=True)
    (target / "a" / "b" / "f.txt").write_text("x")
    for d in (target / "a" / "b", target / "a"):
        d.chmod(stat.S_IRUSR | stat.S_IXUSR)
    assert remove_tree(target) is True
    assert not target.exists()


def test_remove_tree_records_what_it_cannot_delete(tmp_path, monkeypatch, caplog):
    from forgerl.envs.sandbox import base

    target = tmp_path / "stuck"
    target.mkdir()
    monkeypatch.setattr(base.shutil, "rmtree", lambda path: (_ for _ in ()).throw(RecursionError("too deep")))
    monkeypatch.setattr(base, "_coreutils", lambda *argv: None)  # the fallback fails too
    assert remove_tree(target) is False
    assert str(target) in leaked_sandbox_dirs()
    assert "could not delete sandbox directory" in caplog.text


async def test_close_removes_a_deep_tree_the_agent_built_and_never_raises(isolated_backend):
    sb = create_sandbox({"x.txt": "1"}, backend=isolated_backend)
    res = await sb.run(["python3", "-c",
                        f"import os\nfor _ in range({DEPTH}):\n    os.mkdir('d'); os.chdir('d')\n"
                        "os.mkdir('ro'); os.chmod('ro', 0o500); os.chmod('.', 0o500)"])
    assert res.exit_code == 0, res.observation()
    assert "too deep to measure" in res.killed_reason  # the quota check reports it (test_quota.py)
    await sb.close()  # raised RecursionError before the fix
    assert not sb.base.exists()
    await sb.close()  # idempotent
