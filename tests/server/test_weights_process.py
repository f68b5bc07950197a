"""Weight sync between two real processes: a `forgerl serve` process and this one as the trainer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from forgerl.server.admin import VERSION_HEADER
from forgerl.weights import StaleWeightsAlarm, WeightPusher

TOKEN = "process-test-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # starts a second Python with transformers (~20 s on 2 busy cores)
def test_trainer_pushes_weights_to_a_serve_process(tmp_path):
    from forgerl.model.loading import load_policy

    port = _free_port()
    env = {**os.environ, "FORGERL_ADMIN_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "forgerl.cli.main", "serve", "--model", "tiny-random",
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "forgerl serve did not start"
            time.sleep(0.5)
        policy, _ = load_policy("tiny-random", device="cpu", dtype="float32", chat_format="minimax_m2")
        state = {k: v + 0.01 if v.is_floating_point() else v for k, v in policy.state_dict().items()}
        alarm = StaleWeightsAlarm(patience=1)
        with WeightPusher(url, admin_token=TOKEN, shared_dir=tmp_path, alarm=alarm) as pusher:
            for version in (1, 2):
                result = pusher.push(state, version)
                assert result.ok and result.engine_version == version, result.error
        assert not alarm.firing
        reply = httpx.post(f"{url}/v1/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "return_token_ids": True})
        assert reply.status_code == 200 and reply.headers[VERSION_HEADER] == "2"
        assert reply.json()["forgerl"]["policy_version"] == 2
    finally:
        proc.terminate()
        proc.wait(20)
