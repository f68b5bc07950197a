"""`kill -9` of a `forgerl gateway` process mid-session.

What must hold: every trajectory the gateway acknowledged (a session end answered with
`stored: true`) is in the store after the crash, with its recorded calls; the session that was
still open is simply not there (it was never acknowledged) and its credential is refused by the
restarted gateway (401, never attributed to a new session); the restarted gateway on the same
run directory serves and stores new sessions beside the old ones.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from forgerl.testing import start_cli_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gateway(port: int, run_dir: Path, log: Path, started: list[subprocess.Popen]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "FORGERL_GATEWAY_ADMIN_KEY"}
    return start_cli_server(["gateway", "--model", "tiny-random", "--port", str(port), "--run-dir", str(run_dir)],
                            port, log, started, env=env)


def open_session(url: str, seed: int, run_dir: Path) -> dict[str, Any]:
    """Open with the admin key the gateway generated (no FORGERL_GATEWAY_ADMIN_KEY set): it is
    written, mode 0600, in the run directory."""
    key_file = run_dir / "gateway-admin-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    resp = httpx.post(f"{url}/sessions", json={"family": "arithmetic", "seed": seed}, timeout=30,
                      headers={"Authorization": f"Bearer {key_file.read_text().strip()}"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def call(session: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{session['base_url']}/chat/completions", timeout=60,
                      headers={"Authorization": f"Bearer {session['api_key']}"},
                      json={"model": session["model"], "messages": session["messages"], "tools": session["tools"],
                            "max_tokens": 8, "seed": 1})


def stored(run_dir: Path) -> dict[str, Any]:
    from forgerl.store import TrajectoryStore

    with TrajectoryStore(run_dir) as store:
        return {t.id: t for t in store.query()}


@pytest.mark.security
@pytest.mark.slow  # two gateway processes loading tiny-random: ~30 s on 2 busy cores (minutes when overloaded)
@pytest.mark.timeout(600)
def test_kill_9_the_gateway_mid_session(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    run_dir, log = tmp_path / "run", tmp_path / "gateway.log"
    started: list[subprocess.Popen] = []
    try:
        proc = start_gateway(port, run_dir, log, started)
        done = open_session(url, seed=1, run_dir=run_dir)
        assert call(done).status_code == 200
        ended = httpx.post(f"{url}/sessions/{done['session_id']}/end", timeout=60,
                           headers={"Authorization": f"Bearer {done['api_key']}"}).json()
        assert ended["stored"] is True and ended["calls"] == 1
        open_one = open_session(url, seed=2, run_dir=run_dir)
        assert call(open_one).status_code == 200  # recorded, but the session never ends
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

        after_crash = stored(run_dir)
        assert set(after_crash) == {ended["trajectory_id"]}  # the acknowledged one, and only it
        traj = after_crash[ended["trajectory_id"]]
        assert len(traj.calls) == 1 and traj.calls[0].completion_ids and traj.reward is not None

        start_gateway(port, run_dir, log, started)
        assert call(open_one).status_code == 401  # a credential of the dead process: refused, not misattributed
        fresh = open_session(url, seed=3, run_dir=run_dir)
        assert call(fresh).status_code == 200
        again = httpx.post(f"{url}/sessions/{fresh['session_id']}/end", timeout=60,
                           headers={"Authorization": f"Bearer {fresh['api_key']}"}).json()
        assert again["stored"] is True
    finally:
        for p in started:
            p.kill()
            p.wait()
    assert set(stored(run_dir)) == {ended["trajectory_id"], again["trajectory_id"]}
