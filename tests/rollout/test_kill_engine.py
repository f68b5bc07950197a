"""`kill -9` of the inference server under a running trainer (engine = "remote").

What must hold: the rollouts whose requests were in flight end as infrastructure failures
(status FAILED at the engine boundary, no reward — never a fake zero in their group); the trainer
does not crash, its next requests wait until the server is back (the test restarts it on the same
port), the restarted server gets the trainer's newest weights again (its instance changed), and the
run finishes every step with the engine following the trainer's version.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from forgerl.testing import start_cli_server

TOKEN = "kill-engine-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(port: int, log: Path, started: list[subprocess.Popen]) -> subprocess.Popen:
    return start_cli_server(["serve", "--model", "tiny-random", "--port", str(port), "--admin-token", TOKEN],
                            port, log, started)


def admin(http: httpx.Client, url: str) -> dict[str, Any] | None:
    try:
        return http.get(f"{url}/admin/weights", headers=AUTH, timeout=2).json()
    except httpx.HTTPError:
        return None


TRAINER = """
import sys
from forgerl.training import run_training
from forgerl.train.config import load_config
result = run_training(load_config(sys.argv[1]))
print("TRAINED", [s for s, _ in result.eval_rewards], flush=True)
"""


@pytest.mark.slow  # two server starts and a 3-step run: ~30-60 s each on 2 busy cores (minutes when overloaded)
@pytest.mark.timeout(900)
@pytest.mark.parametrize("mode", ["sync", "windowed"])
def test_kill_9_the_engine_mid_run(tmp_path, mode):
    from forgerl.store import TrajectoryStore
    from forgerl.train.config import dump_config, load_config
    from forgerl.types import Boundary, TrajectoryStatus

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log, trainer_log = tmp_path / "serve.log", tmp_path / "trainer.log"
    cfg = load_config(model="tiny-random", env="arithmetic", difficulty=[1], steps=3, groups_per_step=2, group_size=3,
                      max_turns=3, max_tokens=24, max_context=512, eval={"every": 10, "tasks": 1}, checkpoint_every=10,
                      run_dir=str(tmp_path / "run"), engine={"kind": "remote", "url": url, "admin_token": TOKEN},
                      rollout={"mode": mode} if mode == "sync" else {"mode": mode, "capacity": 4})
    (tmp_path / "run.toml").write_text(dump_config(cfg))
    started: list[subprocess.Popen] = []  # killed however the test ends (the trainer too)
    http = httpx.Client()  # one client for the polling: a new one per poll costs CPU the run needs
    try:
        server = start_serve(port, log, started)
        with open(trainer_log, "w") as out:  # the trainer in its own process, as in real use
            # the token is never written to a config file: the trainer takes it from the environment
            trainer = subprocess.Popen([sys.executable, "-c", TRAINER, str(tmp_path / "run.toml")],
                                       stdout=out, stderr=subprocess.STDOUT,
                                       env={**os.environ, "FORGERL_ADMIN_TOKEN": TOKEN})
        started.append(trainer)
        # kill while training rollouts are in flight (the evaluation runs one episode at a time);
        # on-policy: in step 2, so the restarted server must get back pushed weights (version 1)
        min_version = 1 if mode == "sync" else 0
        deadline = time.monotonic() + 300
        while True:
            assert trainer.poll() is None, trainer_log.read_text()
            assert time.monotonic() < deadline, "never saw training rollouts in flight"
            info = admin(http, url)
            if info is not None and info["policy_version"] >= min_version and info["in_flight"] >= 2:
                break
            time.sleep(0.02)
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        time.sleep(1.0)  # rollouts hit the dead port meanwhile: they must wait, not crash
        assert trainer.poll() is None, trainer_log.read_text()
        start_serve(port, log, started)
        assert trainer.wait(timeout=420) == 0, trainer_log.read_text()
        final = admin(http, url)
    finally:
        http.close()
        for proc in started:
            proc.kill()
            proc.wait()
    output = trainer_log.read_text()
    assert "TRAINED [0, 3]" in output, output
    assert final is not None and final["policy_version"] == cfg.steps  # restored, then pushed on
    assert "inference server restarted" in output  # the newest weights went back to it
    with TrajectoryStore(tmp_path / "run") as store:
        run_id = store.runs()[0].id
        trajectories = store.query(run_id=run_id)
        consumed = store.query(run_id=run_id, consumed=True)
        steps = {s for s, _, _ in store.metrics(run_id)}
    assert steps == {0, 1, 2, 3}  # every step trained and logged
    assert len(consumed) == cfg.steps * cfg.groups_per_step * cfg.group_size  # every step had its groups
    if mode == "sync":
        assert len(trajectories) == len(consumed)
    else:  # rollouts kept generating while the trainer trained: more finished than were trained on
        assert len(trajectories) > len(consumed)
    failed = [t for t in trajectories if t.status == TrajectoryStatus.FAILED]
    assert failed, "no rollout was in flight when the engine died"
    for t in failed:  # infra failures: attributed to the engine, no reward at all (not a zero)
        assert t.failure is not None and t.failure.boundary == Boundary.ENGINE and t.reward is None
    assert all(t.reward is not None for t in trajectories if t.status != TrajectoryStatus.FAILED)
