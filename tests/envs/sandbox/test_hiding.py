"""hidden_paths: host paths the namespaced backends mask inside the sandbox (hiding.py), and the
subprocess backend, which cannot mask, refusing them."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

import pytest

from forgerl.envs.sandbox import create_sandbox
from forgerl.envs.sandbox.base import python_roots
from forgerl.envs.sandbox.hiding import resolve_hidden
from forgerl.errors import SandboxError


@pytest.fixture
def secret_dir():
    """A directory with a secret file, inside the mounted venv (where swe's pristine packages live)."""
    site_dir = Path(next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)))
    try:
        path = Path(tempfile.mkdtemp(prefix="forgerl-hidden-test-", dir=site_dir))
    except OSError:
        pytest.skip(f"cannot write a test directory into {site_dir}")
    (path / "answer.py").write_text("SECRET = 'the-gold-fix'\n")
    (path.parent / f"{path.name}.py").write_text("SECRET = 'the-gold-fix'\n")
    os.chmod(path, 0o755)
    os.chmod(path / "answer.py", 0o644)
    os.chmod(path.parent / f"{path.name}.py", 0o644)
    yield path
    (path.parent / f"{path.name}.py").unlink()
    (path / "answer.py").unlink()
    path.rmdir()


def run(sandbox, cmd: str):
    return asyncio.run(sandbox.run(cmd))


def test_visible_without_hiding(isolated_backend, secret_dir):
    """The premise: the venv is mounted, so without a mask its files are readable inside."""
    sandbox = create_sandbox(backend=isolated_backend)
    try:
        assert "the-gold-fix" in run(sandbox, f"cat {secret_dir}/answer.py").stdout
    finally:
        asyncio.run(sandbox.close())


def test_hidden_directory_and_file_are_unreadable_and_unlisted(isolated_backend, secret_dir):
    module = f"{secret_dir}.py"
    sandbox = create_sandbox(backend=isolated_backend, hidden_paths=[str(secret_dir), module])
    try:
        cat = run(sandbox, f"cat {secret_dir}/answer.py {module}; ls -A {secret_dir}")
        assert "the-gold-fix" not in cat.stdout + cat.stderr
        assert "answer.py" not in cat.stdout
        found = run(sandbox, f"grep -rl the-gold-fix {secret_dir.parent} 2>/dev/null; find / -name answer.py 2>/dev/null")
        assert "the-gold-fix" not in found.stdout and str(secret_dir) not in found.stdout
        name = secret_dir.name
        imported = run(sandbox, f"cd /tmp && python3 -c 'import {name}; print({name}.SECRET)'")
        assert imported.exit_code != 0 and "the-gold-fix" not in imported.stdout
        written = run(sandbox, f"echo x > {secret_dir}/planted.py")
        assert written.exit_code != 0 and not (secret_dir / "planted.py").exists()
        assert run(sandbox, "python3 -c 'import json; print(1)'").stdout.strip() == "1"  # the rest still works
    finally:
        asyncio.run(sandbox.close())
    assert (secret_dir / "answer.py").read_text() == "SECRET = 'the-gold-fix'\n"  # the host copy is untouched


def test_subprocess_backend_refuses_hidden_paths(secret_dir):
    with pytest.raises(SandboxError, match="cannot hide host paths"):
        create_sandbox(backend="subprocess", hidden_paths=[str(secret_dir)])


def test_resolve_hidden_keeps_only_visible_existing_paths_and_refuses_mounted_roots(secret_dir, tmp_path):
    hidden = resolve_hidden([str(secret_dir), str(secret_dir / "answer.py"), str(tmp_path), "/no/such/path"])
    assert [(h.path, h.is_dir) for h in hidden] == [(str(secret_dir.resolve()), True)]
    with pytest.raises(SandboxError, match="contains the sandbox's mounted"):
        resolve_hidden([python_roots()[-1]])
    with pytest.raises(SandboxError, match="not an absolute path"):
        resolve_hidden(["relative/dir"])
