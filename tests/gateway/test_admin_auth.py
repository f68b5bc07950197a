"""The admin API is explicit (issue 26 item 2): with no admin key configured the gateway makes one,
and only that key opens, lists, reads or ends other sessions. A dead, guessed, malformed or
missing credential is a 401; another session's live key is a 403; nothing is changed by either."""

from __future__ import annotations

import httpx
import pytest

from forgerl.chat import get_format
from forgerl.types import Message

M2 = get_format("minimax_m2")
REPLY = M2.render_assistant_body(Message(role="assistant", content="ok", reasoning="fine"))


def _as(live, key: str | None) -> httpx.Client:
    headers = {"Authorization": key} if key is not None else {}
    return httpx.Client(base_url=live.url, timeout=30, headers=headers)


def _dead_key(live) -> str:
    s = live.open()
    live.end(s)
    return s["api_key"]


ATTACKERS = {
    "dead-session-key": lambda live: f"Bearer {_dead_key(live)}",
    "guessed-key": lambda live: "Bearer fgw-" + "A" * 43,
    "guessed-admin-key": lambda live: "Bearer admin",
    "malformed-scheme": lambda live: f"Basic {live.gateway.admin_key}",
    "empty-bearer": lambda live: "Bearer",
    "no-credential": lambda live: None,
}


@pytest.mark.parametrize("attacker", list(ATTACKERS))
def test_without_a_configured_key_nothing_but_the_generated_one_is_admin(live_gateway, attacker):
    live = live_gateway(replies=[REPLY] * 4)  # no admin_key: the CLI default on loopback
    assert live.gateway.admin_key and len(live.gateway.admin_key) >= 40  # made up at start, not "anything"
    victim = live.open()
    live.client(victim).chat.completions.create(model="gw-test", messages=[{"role": "user", "content": "hi"}])
    finished = live.open()
    live.end(finished)
    with _as(live, ATTACKERS[attacker](live)) as evil:
        sid = victim["session_id"]
        attempts = {
            "list": evil.get("/sessions"),
            "read": evil.get(f"/sessions/{sid}"),
            "trajectory": evil.get(f"/sessions/{finished['session_id']}/trajectory"),
            "open": evil.post("/sessions", json={}),
            "end": evil.post(f"/sessions/{sid}/end", json={"reward": 1.0}),
        }
    for what, r in attempts.items():
        assert r.status_code == 401, (what, r.status_code, r.text)
        assert r.json()["error"]["type"] == "authentication_error", what
        assert "admin key" in r.json()["error"]["message"] or "credential" in r.json()["error"]["message"], what
    assert sid in live.gateway.sessions and not live.gateway.sessions[sid].ended  # still live, not ended
    assert sid not in live.gateway.finished  # no reward was stored for it
    assert len(live.gateway.sessions) == 1  # no session was opened


def test_another_sessions_live_key_cannot_use_the_admin_api(live_gateway):
    live = live_gateway(replies=[REPLY] * 2)
    a, b = live.open(), live.open()
    with _as(live, f"Bearer {b['api_key']}") as other:
        assert other.get("/sessions").status_code == 403
        assert other.post("/sessions", json={}).status_code == 403
        assert other.post(f"/sessions/{a['session_id']}/end", json={"reward": 1.0}).status_code == 403
    assert not live.gateway.sessions[a["session_id"]].ended


def test_the_generated_admin_key_works_and_differs_per_gateway(live_gateway):
    one, two = live_gateway(replies=[REPLY]), live_gateway(replies=[REPLY])
    assert one.gateway.admin_key != two.gateway.admin_key
    s = one.open()
    assert one.http.get("/sessions").json()["sessions"][0]["session_id"] == s["session_id"]
    with _as(one, f"Bearer {two.gateway.admin_key}") as wrong_gateway:
        assert wrong_gateway.get("/sessions").status_code == 401
    assert one.http.post(f"/sessions/{s['session_id']}/end", json={"reward": 0.5}).json()["reward"] == 0.5


def test_a_configured_admin_key_is_used_as_given(live_gateway):
    live = live_gateway(replies=[REPLY], admin_key="a-long-configured-admin-key-0123456789")
    assert live.gateway.admin_key == "a-long-configured-admin-key-0123456789"
    with _as(live, "Bearer a-long-configured-admin-key-0123456789") as admin:
        assert admin.get("/sessions").status_code == 200


def test_admin_routes_can_be_switched_off(live_gateway):
    live = live_gateway(replies=[REPLY], admin=False)
    assert live.gateway.admin_key is None
    r = live.bare.post("/sessions", json={})
    assert r.status_code == 403 and "admin API is off" in r.json()["error"]["message"]
    opened = live.gateway.open_session()  # in-process drivers still open sessions
    with _as(live, f"Bearer {opened.api_key}") as own:
        assert own.get(f"/sessions/{opened.session.id}").status_code == 200
