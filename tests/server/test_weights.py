"""Cross-process weight sync through `/admin/weights`: auth, real weights into the built-in engine,
drain semantics (no completion mixes versions), version stamping, and the stale-weights alarm."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest
import torch

from forgerl.engine.llm import LLMEngine
from forgerl.engine.scripted import ScriptedEngine
from forgerl.server.admin import VERSION_HEADER
from forgerl.server.app import create_app
from forgerl.testing import build_micro_moe
from forgerl.weights import StaleWeightsAlarm, StaleWeightsError, WeightPusher

TOKEN = "s3cret-admin"
MODEL = "weights-test"


def _chat(base_url: str, stream: bool = False) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream,
            "return_token_ids": True}
    return httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=30)


def test_admin_routes_need_a_token(serve_app, m2_tokenizer, m2_format, tmp_path):
    engine = ScriptedEngine(m2_tokenizer, ["ok"], model_name=MODEL)
    closed = serve_app(create_app(engine, m2_format))
    r = httpx.get(f"{closed.base_url}/admin/weights")
    assert r.status_code == 404 and "admin token" in r.json()["error"]["message"]
    live = serve_app(create_app(engine, m2_format, admin_token=TOKEN))
    assert httpx.get(f"{live.base_url}/admin/weights").status_code == 401
    wrong = httpx.post(f"{live.base_url}/admin/weights", headers={"Authorization": "Bearer nope"},
                       json={"path": "/x.safetensors", "version": 1})
    assert wrong.status_code == 401
    ok = httpx.get(f"{live.base_url}/admin/weights", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.json() == {"policy_version": 0, "in_flight": 0, "paused": False}


def test_pushed_weights_reach_the_built_in_engine_exactly(serve_app, m2_tokenizer, m2_format, tmp_path):
    serving = build_micro_moe(seed=0)
    engine = LLMEngine(serving, m2_tokenizer, model_name=MODEL, max_context=64, num_slots=2)
    live = serve_app(create_app(engine, m2_format, admin_token=TOKEN))
    trained = build_micro_moe(seed=1).state_dict()
    assert not torch.equal(serving.state_dict()["lm_head.weight"], trained["lm_head.weight"])
    with WeightPusher(live.base_url, admin_token=TOKEN, shared_dir=tmp_path / "shm") as pusher:
        result = pusher.push(trained, 1)
        assert result.ok and result.engine_version == 1 and engine.policy_version == 1, result.error
        for name, tensor in serving.state_dict().items():
            assert torch.equal(tensor, trained[name]), name
        assert result.bytes > 0 and result.server["tensors"] == len(trained)
        again = pusher.push(trained, 1)  # versions must increase
        assert not again.ok and "409" in again.error and again.engine_version == 1
        bad = dict(trained)
        bad["not.a.parameter"] = torch.zeros(1)
        refused = pusher.push(bad, 2)
        assert not refused.ok and "unknown parameter" in refused.error and engine.policy_version == 1
        assert list((tmp_path / "shm").iterdir()) == [tmp_path / "shm" / "policy_v00000001.safetensors"]


def test_bad_weight_requests_get_clear_4xx(serve_app, m2_tokenizer, m2_format, tmp_path):
    live = serve_app(create_app(ScriptedEngine(m2_tokenizer, ["ok"], model_name=MODEL), m2_format, admin_token=TOKEN))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    missing = httpx.post(f"{live.base_url}/admin/weights", headers=auth,
                         json={"path": str(tmp_path / "none.safetensors"), "version": 1})
    assert missing.status_code == 400 and "not a readable .safetensors" in missing.json()["error"]["message"]
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors at all")
    r = httpx.post(f"{live.base_url}/admin/weights", headers=auth, json={"path": str(junk), "version": 1})
    assert r.status_code == 400 and "cannot read" in r.json()["error"]["message"]
    r = httpx.post(f"{live.base_url}/admin/weights", headers=auth, json={"path": str(junk), "version": -1})
    assert r.status_code == 400 and "version" in r.json()["error"]["message"]


def test_update_drains_in_flight_requests_and_every_call_is_stamped(serve_app, m2_tokenizer, m2_format, tmp_path):
    engine = ScriptedEngine(m2_tokenizer, ["<think>\nslow</think>\n" + "word " * 40], model_name=MODEL,
                            cycle=True, delay_s=0.01)
    live = serve_app(create_app(engine, m2_format, admin_token=TOKEN))
    responses: dict[str, httpx.Response] = {}

    def slow_call(key: str) -> None:
        responses[key] = _chat(live.base_url)

    before = threading.Thread(target=slow_call, args=("before",))
    before.start()
    deadline = time.monotonic() + 5
    while live.app.state.gate.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert live.app.state.gate.in_flight == 1
    pusher = WeightPusher(live.base_url, admin_token=TOKEN, shared_dir=tmp_path)
    during = threading.Thread(target=slow_call, args=("during",))
    pushed: list = []
    push = threading.Thread(target=lambda: pushed.append(pusher.push({"w": torch.ones(2)}, 1)))
    push.start()
    while not live.app.state.gate.paused and push.is_alive():
        time.sleep(0.002)
    during.start()  # arrives while the engine drains: must wait and run on the new version
    for t in (before, push, during):
        t.join(30)
    result = pushed[0]
    assert result.ok and result.server["drained_requests"] == 1 and result.server["drain_s"] > 0.05
    assert responses["before"].headers[VERSION_HEADER] == "0"
    assert responses["before"].json()["forgerl"]["policy_version"] == 0
    assert responses["during"].headers[VERSION_HEADER] == "1"
    assert responses["during"].json()["forgerl"]["policy_version"] == 1
    streamed = _chat(live.base_url, stream=True)
    assert streamed.headers[VERSION_HEADER] == "1" and '"policy_version": 1' in streamed.text
    assert live.app.state.gate.in_flight == 0
    pusher.close()


def test_drain_timeout_loads_nothing_and_reopens(serve_app, m2_tokenizer, m2_format, tmp_path):
    engine = ScriptedEngine(m2_tokenizer, ["word " * 60], model_name=MODEL, cycle=True, delay_s=0.01)
    live = serve_app(create_app(engine, m2_format, admin_token=TOKEN))
    call = threading.Thread(target=_chat, args=(live.base_url,))
    call.start()
    while live.app.state.gate.in_flight == 0:
        time.sleep(0.005)
    alarm = StaleWeightsAlarm(patience=1)
    with WeightPusher(live.base_url, admin_token=TOKEN, shared_dir=tmp_path, drain_timeout_s=0.05, alarm=alarm) as p:
        result = p.push({"w": torch.ones(1)}, 1)
    call.join(30)
    assert not result.ok and "503" in result.error and result.engine_version == 0
    assert engine.policy_version == 0 and alarm.firing
    assert _chat(live.base_url).status_code == 200  # the gate reopened


def test_stale_weights_alarm(caplog):
    seen: list[str] = []
    alarm = StaleWeightsAlarm(max_lag=0, patience=2, raise_after=4, on_alarm=seen.append)
    with caplog.at_level(logging.ERROR, logger="forgerl.weights.alarm"):
        assert alarm.check(1, 1) is False
        assert alarm.check(2, 1) is False  # one lagging check: patience
        assert alarm.check(3, 1) is True and "STALE WEIGHTS" in caplog.text and "2 behind" in seen[-1]
        assert alarm.check(4, None) is True and "cannot be reached" in seen[-1]
        with pytest.raises(StaleWeightsError):
            alarm.check(5, 1)
    assert alarm.check(6, 6) is False and not alarm.firing  # caught up: cleared
    assert StaleWeightsAlarm().check(3, 4) is True  # engine ahead of the trainer: at once
    with pytest.raises(ValueError):
        StaleWeightsAlarm(patience=3, raise_after=2)


def test_push_to_an_unreachable_engine_does_not_crash_the_trainer(tmp_path, caplog):
    alarm = StaleWeightsAlarm(patience=2)
    with WeightPusher("http://127.0.0.1:9", admin_token=TOKEN, shared_dir=tmp_path, timeout_s=2, alarm=alarm) as p:
        with caplog.at_level(logging.ERROR):
            first = p.push({"w": torch.ones(1)}, 1)
            second = p.push({"w": torch.ones(1)}, 2)
    assert not first.ok and not second.ok and first.engine_version is None
    assert alarm.firing and "STALE WEIGHTS" in caplog.text
    assert not any(tmp_path.glob("*.safetensors"))


def test_a_client_leaving_mid_stream_does_not_block_the_next_drain(serve_app, m2_tokenizer, m2_format, tmp_path):
    engine = ScriptedEngine(m2_tokenizer, ["word " * 200], model_name=MODEL, cycle=True, delay_s=0.01)
    live = serve_app(create_app(engine, m2_format, admin_token=TOKEN))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", f"{live.base_url}/v1/chat/completions", json=body, timeout=30) as resp:
        next(resp.iter_lines())  # the first chunk arrived; now hang up
    deadline = time.monotonic() + 10
    while live.app.state.gate.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
    assert live.app.state.gate.in_flight == 0
    with WeightPusher(live.base_url, admin_token=TOKEN, shared_dir=tmp_path, drain_timeout_s=5) as pusher:
        assert pusher.push({"w": torch.ones(1)}, 1).ok
