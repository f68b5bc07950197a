"""Credentials and malformed requests: 401, 403, 4xx with a message that says what was wrong, and
the gateway still serving afterwards."""

from __future__ import annotations

import time

import openai
import pytest

from forgerl.chat import get_format
from forgerl.store import TrajectoryStore
from forgerl.types import Message, TrajectoryStatus

from .conftest import MODEL

M2 = get_format("minimax_m2")
REPLY = M2.render_assistant_body(Message(role="assistant", content="ok", reasoning="fine"))


def _post(live, path, key=None, **kw):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return live.http.post(path, headers=headers, **kw)


def test_unknown_missing_and_ended_credentials_get_401(live_gateway):
    live = live_gateway(replies=[REPLY] * 3)
    s = live.open()
    bad = openai.OpenAI(base_url=f"{live.url}/v1", api_key="fgw-not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert "unknown or expired session credential" in err.value.message
    r = live.bare.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 401 and "missing credential" in r.json()["error"]["message"]
    client = live.client(s)
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    live.end(s)
    with pytest.raises(openai.AuthenticationError):  # the credential died with the session
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert _post(live, f"/sessions/{s['session_id']}/v1/tools/call", s["api_key"], json={"name": "x"}).status_code == 401


def test_another_sessions_credential_is_403(live_gateway):
    live = live_gateway(replies=[REPLY] * 4)
    a, b = live.open(), live.open()
    wrong = openai.OpenAI(base_url=a["base_url"], api_key=b["api_key"], max_retries=0)  # a's URL, b's key
    with pytest.raises(openai.PermissionDeniedError) as err:
        wrong.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert "another session" in err.value.message
    assert _post(live, f"/sessions/{a['session_id']}/end", b["api_key"]).status_code == 403
    assert live.http.get(f"/sessions/{a['session_id']}", headers={"Authorization": f"Bearer {b['api_key']}"}).status_code == 403
    assert not live.gateway.sessions[a["session_id"]].trajectory.calls  # nothing leaked into a
    assert not live.gateway.sessions[b["session_id"]].trajectory.calls
    # b's own URL with b's key works
    live.client(b).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert len(live.gateway.sessions[b["session_id"]].trajectory.calls) == 1


def test_admin_api_needs_the_admin_key(live_gateway):
    live = live_gateway(replies=[REPLY], admin_key="admin-secret-0123456789")
    assert live.bare.post("/sessions", json={}).status_code == 401
    assert _post(live, "/sessions", "wrong", json={}).status_code == 401
    s = _post(live, "/sessions", "admin-secret-0123456789", json={}).json()
    r = _post(live, "/sessions", s["api_key"], json={})
    assert r.status_code == 403 and "admin API" in r.json()["error"]["message"]
    assert _post(live, f"/sessions/{s['session_id']}/end", "admin-secret-0123456789").status_code == 200  # admin may end it


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "must be a JSON object"),
    (b'{"messages": []}', 400, "messages"),
    (b'{"messages": [{"role": "wizard", "content": "x"}]}', 400, "messages[0].role"),
    (b'{"model": "other", "messages": [{"role": "user", "content": "x"}]}', 404, "does not exist"),
    (b'{"messages": [{"role": "user", "content": "x"}], "n": 3}', 400, "n=1"),
    (b'{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "bad name!"}}]}',
     400, "invalid tool name"),
])
def test_malformed_requests_get_4xx_and_the_gateway_keeps_serving(live_gateway, body, status, words):
    live = live_gateway(replies=[REPLY])
    s = live.open()
    r = live.http.post(f"/sessions/{s['session_id']}/v1/chat/completions", content=body,
                       headers={"Authorization": f"Bearer {s['api_key']}", "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"] + str(r.json()["error"]["param"])
    resp = live.client(s).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert resp.choices[0].message.content == "ok"
    assert len(live.gateway.sessions[s["session_id"]].trajectory.calls) == 1  # the bad request recorded nothing


def test_bad_session_requests(live_gateway):
    live = live_gateway(replies=[REPLY])
    r = live.http.post("/sessions", json={"family": "no-such-family"})
    assert r.status_code == 400 and "unknown task family" in r.json()["error"]["message"]
    assert live.http.post("/sessions", json={"ttl_s": -1}).status_code == 400
    assert live.http.post("/sessions", json={"colour": "red"}).status_code == 400
    s = live.open()  # no environment: no tools to run
    r = _post(live, f"/sessions/{s['session_id']}/v1/tools/call", s["api_key"], json={"name": "lookup"})
    assert r.status_code == 400 and "no environment" in r.json()["error"]["message"]
    env_s = live.open(family="tool-reasoning", seed=1)
    r = _post(live, f"/sessions/{env_s['session_id']}/end", env_s["api_key"], json={"reward": 1.0})
    assert r.status_code == 400 and "scores it" in r.json()["error"]["message"]
    r = _post(live, f"/sessions/{env_s['session_id']}/v1/tools/call", env_s["api_key"],
              json={"name": "nope", "arguments": "{}"})
    assert r.status_code == 200 and r.json()["is_error"] and "unknown tool" in r.json()["content"]


def test_expired_sessions_are_401_and_stored_as_failed(live_gateway, tmp_path):
    store = TrajectoryStore(tmp_path)
    live = live_gateway(replies=[REPLY], store=store)
    s = live.open(ttl_s=0.2)
    time.sleep(0.3)
    with pytest.raises(openai.AuthenticationError) as err:
        live.client(s).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert "expired" in err.value.message
    live.open()  # opening a session reaps expired ones
    traj = store.get_trajectory(live.gateway.finished[s["session_id"]].id)
    assert traj.status == TrajectoryStatus.FAILED and traj.failure.boundary.value == "timeout"


def test_recording_only_session_takes_the_clients_reward_and_is_stored(live_gateway, tmp_path):
    store = TrajectoryStore(tmp_path)
    live = live_gateway(replies=[REPLY], store=store)
    s = live.open(group_id="g1")
    live.client(s).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    out = live.end(s, reward=0.25)
    traj = store.get_trajectory(out["trajectory_id"])
    assert traj.reward == 0.25 and traj.group_id == "g1" and len(traj.calls) == 1 and out["stored"]
    assert traj.messages[-1].content == "ok" and traj.messages[-1].reasoning == "fine"
