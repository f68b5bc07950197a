"""The review app over HTTP (FastAPI TestClient): sign-in, CSRF, escaping, labelling, agreement."""

from __future__ import annotations

import html
from html.parser import HTMLParser

import pytest

from forgerl.store import TrajectoryStore

from .conftest import csrf_of, sign_in

PAGES = ["/", "/trajectories", "/t/ops_000_0", "/compare?a=ops_000_0&b=ops_000_1", "/agreement", "/queue"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_sign_in(client, path):
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize("path", ["/t/ops_000_0/rubric", "/t/ops_000_0/comment", "/compare", "/logout"])
def test_posts_without_a_session_get_401(client, path):
    assert client.post(path, data={"csrf_token": "x"}, follow_redirects=False).status_code == 401


def test_sign_in_rejects_wrong_password_and_missing_csrf(client):
    assert sign_in(client, "alice", "wrong-password").status_code == 401
    assert sign_in(client, "mallory", "whatever-pass").status_code == 401
    client.get("/login")
    r = client.post("/login", data={"name": "alice", "password": "alice-password-1"}, follow_redirects=False)
    assert r.status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 303  # still signed out


def test_sign_in_never_redirects_off_site(client):
    page = client.get("/login?next=//evil.example/x")
    r = client.post("/login", data={"name": "alice", "password": "alice-password-1", "csrf_token": csrf_of(page.text),
                                    "next": "//evil.example/x"}, follow_redirects=False)
    assert r.headers["location"] == "/"


def test_session_cookie_flags_and_security_headers(client):
    r = sign_in(client)
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=" in cookie
    page = client.get("/")
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no scripts
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_sessions_expire(app):
    from fastapi.testclient import TestClient

    clock = [1000.0]
    app.state.sessions._clock = lambda: clock[0]
    with TestClient(app) as c:
        sign_in(c)
        assert c.get("/", follow_redirects=False).status_code == 200
        clock[0] += app.state.sessions.ttl_s + 1
        assert c.get("/", follow_redirects=False).status_code == 303


def test_post_without_or_with_wrong_csrf_is_rejected(alice, run_dir):
    data = {"score_correctness": "4", "score_process": "4", "score_communication": "4"}
    assert alice.post("/t/ops_000_0/rubric", data=data, follow_redirects=False).status_code == 403
    assert alice.post("/t/ops_000_0/rubric", data={**data, "csrf_token": "forged"},
                      follow_redirects=False).status_code == 403
    with TrajectoryStore(run_dir) as store:
        assert store.labels("ops_000_0") == []


class _ActiveContent(HTMLParser):
    """Collects what a browser would execute: script elements, on* handlers, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "img", "iframe", "object", "embed"):
            self.found.append(tag)
        for name, value in attrs:
            if name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"{tag}[{name}={value}]")


def active_content(page: str) -> list[str]:
    parser = _ActiveContent()
    parser.feed(page)
    return parser.found


def test_the_active_content_detector_detects():
    assert active_content('<p><script>x</script><a href=" javascript:y">z</a><b onclick="q">') == [
        "script", "a[href= javascript:y]", "b[onclick=q]"]


@pytest.mark.parametrize("path", ["/t/evil_traj?tokens=1", "/trajectories?q=evil",
                                  "/trajectories", "/queue"])
def test_malicious_trajectory_is_shown_as_text(alice, path):
    page = alice.get(path).text
    assert active_content(page) == []


def test_malicious_fields_appear_literally(alice):
    page = alice.get("/t/evil_traj").text
    text = html.unescape(page)
    assert '<script>alert("xss")</script>' in text  # shown, as text
    assert "[click me](javascript:alert(2))" in text  # the markdown link stays literal
    assert '<a href="javascript:alert(4)">link</a>' in text
    assert "&lt;script&gt;" in page


def test_trajectory_view_shows_steps_calls_observations_reward_and_evidence(alice):
    page = alice.get("/t/ops_001_0").text
    assert "thinking" in page and "tool call" in page and "observation" in page
    assert "Verifier evidence" in page and "Final reply" in page and "outcome" in page
    assert "policy version" not in page
    assert "policy version" in alice.get("/t/ops_001_0?tokens=1").text


def test_filters_and_search(alice):
    def ids(query):
        page = alice.get("/trajectories" + query).text
        return {line.split('href="/t/')[1].split('"')[0] for line in page.splitlines() if 'href="/t/' in line}

    everything = ids("")
    assert len(everything) == 13
    assert ids("?family=ops-disk") == {"ops_000_0", "ops_000_1", "ops_000_2"}
    assert ids("?min_reward=0.9") == ids("?min_reward=1&max_reward=1")
    assert ids("?perturbation=yes") == {"ops_000_1", "ops_001_1", "ops_002_1", "ops_003_1", "evil_traj"}
    assert ids("?q=alert") == {"evil_traj"}
    assert ids("?step=0") == everything and ids("?step=3") == set()
    assert alice.get("/trajectories?min_reward=lots").status_code == 400


def _score(client, tid, scores, note=""):
    page = client.get(f"/t/{tid}").text
    data = {f"score_{k}": str(v) for k, v in scores.items()} | {"note": note, "csrf_token": csrf_of(page)}
    return client.post(f"/t/{tid}/rubric", data=data, follow_redirects=False)


def test_labelling_rescoring_comments_and_agreement(alice, bob, run_dir):
    assert _score(alice, "ops_000_0", {"correctness": 5, "process": 2, "communication": 4}).status_code == 303
    again = _score(alice, "ops_000_0", {"correctness": 4, "process": 2, "communication": 4}, "second look")
    assert again.status_code == 303
    assert _score(bob, "ops_000_0", {"correctness": 4, "process": 5, "communication": 3}).status_code == 303
    assert _score(bob, "ops_000_0", {"correctness": 9, "process": 5, "communication": 3}).status_code == 400
    page = alice.get("/t/ops_000_0").text
    csrf = csrf_of(page)
    r = alice.post("/t/ops_000_0/comment", data={"csrf_token": csrf, "message_index": "2", "text": "why <b>this</b>?"},
                   follow_redirects=False)
    assert r.status_code == 303
    page = alice.get("/t/ops_000_0").text
    assert "second look" in page and "message 2: why &lt;b&gt;this&lt;/b&gt;?" in page
    with TrajectoryStore(run_dir) as store:
        current = store.labels("ops_000_0", kind="rubric", current_only=True)
        got = sorted((lab.expert, lab.payload["scores"]["correctness"]) for lab in current)
        assert got == [("alice", 4), ("bob", 4)]
        assert len(store.labels("ops_000_0", kind="rubric")) == 3  # history kept
    ag = alice.get("/agreement").text
    # correctness: 4 vs 4 -> exact 100%; process 2 vs 5 -> 0%, |diff| 3.00
    assert "<td>correctness</td><td>1</td><td>100%</td>" in ag
    assert "<td>process</td><td>1</td><td>0%</td><td>0%</td><td>3.00</td>" in ag
    assert "alice · bob" in ag


def test_preferences_and_queue(alice, bob, run_dir):
    page = alice.get("/compare?a=ops_002_0&b=ops_002_1").text
    data = {"csrf_token": csrf_of(page), "a": "ops_002_0", "b": "ops_002_1", "preferred": "ops_002_1",
            "reason": "safer"}
    assert alice.post("/compare", data=data, follow_redirects=False).status_code == 303
    assert alice.post("/compare", data={**data, "reason": " "}, follow_redirects=False).status_code == 400
    assert alice.post("/compare", data={**data, "b": "ops_003_0"}, follow_redirects=False).status_code == 400
    page = bob.get("/compare?a=ops_002_0&b=ops_002_1").text
    assert "alice preferred B (safer)" in page
    r = bob.post("/compare", data={**data, "csrf_token": csrf_of(page), "preferred": "ops_002_0", "reason": "cleaner"},
                 follow_redirects=False)
    assert r.status_code == 303
    assert "<td>1</td><td>0%</td></tr>" in alice.get("/agreement").text  # one shared comparison, disagreeing
    with TrajectoryStore(run_dir) as store:
        prefs = store.labels(kind="preference", current_only=True)
        assert {(p.expert, p.payload["preferred"]) for p in prefs} == {("alice", "ops_002_1"), ("bob", "ops_002_0")}
    assert "not scored by any expert yet" in alice.get("/queue").text


def test_sign_out_ends_the_session(alice):
    page = alice.get("/").text
    assert alice.post("/logout", data={"csrf_token": csrf_of(page)}, follow_redirects=False).status_code == 303
    assert alice.get("/", follow_redirects=False).status_code == 303


def test_unknown_trajectory_is_404(alice):
    assert alice.get("/t/nope").status_code == 404
