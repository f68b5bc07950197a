"""A gateway that is stopped (SIGTERM, or lifespan shutdown) leaves no sandbox behind: every live
session ends FAILED (not the agent's doing, no reward), is stored, and its environment is closed."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from forgerl.engine.scripted import ScriptedEngine
from forgerl.gateway.core import Gateway
from forgerl.gateway.serve import CloseSessionsOnShutdown
from forgerl.testing import start_cli_server
from forgerl.types import Boundary, TrajectoryStatus


def sandbox_dirs(root: Path) -> list[Path]:
    return [p for p in root.glob("forgerl-sandbox-*") if "probe" not in p.name]


async def drive_lifespan(app) -> list[str]:
    """Play the ASGI lifespan protocol the way uvicorn does at start and at SIGTERM."""
    inbox = asyncio.Queue()
    for kind in ("lifespan.startup", "lifespan.shutdown"):
        inbox.put_nowait({"type": kind})
    sent: list[str] = []

    async def send(message):
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    return sent


def test_lifespan_shutdown_ends_live_sessions_and_removes_their_sandboxes(m2_tokenizer, m2_format):
    gateway = Gateway(ScriptedEngine(m2_tokenizer, ["x"]), m2_format)
    opened = gateway.open_session(family="swe-bugfix", seed=0)
    sandbox = opened.session.env._sandbox
    assert sandbox.base.is_dir()
    inner_called = []
    app = CloseSessionsOnShutdown(lambda *a: inner_called.append(a), gateway)
    sent = asyncio.run(drive_lifespan(app))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"] and inner_called == []
    assert not sandbox.base.exists()
    assert gateway.sessions == {}
    traj = gateway.finished[opened.session.id]
    assert traj.status == TrajectoryStatus.FAILED and traj.reward is None
    assert traj.failure.boundary == Boundary.TIMEOUT and "shut down" in traj.failure.message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.security
@pytest.mark.slow  # a gateway process loading tiny-random: ~15 s on 2 busy cores
@pytest.mark.timeout(600)
def test_sigterm_removes_live_sessions_sandboxes(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    port = free_port()
    env = dict(os.environ, FORGERL_GATEWAY_ADMIN_KEY="cleanup-test-admin-key-0123456789")
    env["TMPDIR"] = str(tmp)  # sandboxes are made under TMPDIR: we can see them come and go
    started: list[subprocess.Popen] = []
    try:
        proc = start_cli_server(["gateway", "--model", "tiny-random", "--port", str(port),
                                 "--run-dir", str(tmp_path / "run")], port, tmp_path / "gateway.log", started, env=env)
        resp = httpx.post(f"http://127.0.0.1:{port}/sessions", json={"family": "swe-bugfix", "seed": 0}, timeout=60,
                           headers={"Authorization": "Bearer cleanup-test-admin-key-0123456789"})
        assert resp.status_code == 200, resp.text
        assert len(sandbox_dirs(tmp)) == 1
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert sandbox_dirs(tmp) == [], (tmp_path / "gateway.log").read_text()[-2000:]
        from forgerl.store import TrajectoryStore

        with TrajectoryStore(tmp_path / "run") as store:
            trajs = store.query()
        assert [t.status for t in trajs] == [TrajectoryStatus.FAILED]
        assert trajs[0].metadata["session_id"] == resp.json()["session_id"]
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
                p.wait()
