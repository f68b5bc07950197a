"""Sign-in hardening: failed sign-ins are throttled per account and per client address (429 with a
lockout that grows and then expires), the password is verified off the event loop, and a remote
server is refused unless it is behind TLS, in which case its cookies are Secure."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from forgerl.review.auth import LoginThrottle

from .conftest import sign_in

# -- the throttle on its own (no HTTP, no argon2) ------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fail(throttle: LoginThrottle, account: str = "alice", client: str = "10.0.0.1") -> float | None:
    wait = throttle.admit(account, client)
    if wait is None:
        throttle.failed(account, client)
    return wait


def test_five_failures_lock_the_account_and_the_lock_doubles():
    clock = _Clock()
    throttle = LoginThrottle(max_failures=5, lockout_s=300, clock=clock)
    assert [_fail(throttle) for _ in range(5)] == [None] * 5
    assert throttle.admit("alice", "10.0.0.2") == pytest.approx(300)  # another address, same account: locked
    assert throttle.admit("bob", "10.0.0.2") is None  # another account is not
    throttle.finished("bob", "10.0.0.2")
    clock.now += 301
    assert [_fail(throttle) for _ in range(5)] == [None] * 5
    assert throttle.admit("alice", "10.0.0.1") == pytest.approx(600)  # the second lockout is twice as long


def test_a_success_resets_the_accounts_count():
    clock = _Clock()
    throttle = LoginThrottle(max_failures=5, clock=clock)
    for _ in range(4):
        _fail(throttle)
    assert throttle.admit("alice", "10.0.0.1") is None
    throttle.succeeded("alice", "10.0.0.1")
    assert [_fail(throttle) for _ in range(4)] == [None] * 4
    assert throttle.admit("alice", "10.0.0.1") is None  # 4 + 1 after the reset, not 9


def test_failures_age_out_of_the_window():
    clock = _Clock()
    throttle = LoginThrottle(max_failures=5, window_s=900, clock=clock)
    for _ in range(4):
        _fail(throttle)
    clock.now += 901
    assert [_fail(throttle) for _ in range(4)] == [None] * 4
    assert throttle.admit("alice", "10.0.0.1") is None


def test_one_address_trying_many_accounts_is_locked():
    throttle = LoginThrottle(max_failures=5, max_client_failures=20, clock=_Clock())
    for i in range(20):
        assert _fail(throttle, account=f"user{i}") is None
    assert throttle.admit("alice", "10.0.0.1") is not None
    assert throttle.admit("alice", "10.0.0.9") is None


def test_concurrent_attempts_cannot_exceed_the_limit():
    """Attempts in flight count: 50 simultaneous guesses admit 5, not 50."""
    throttle = LoginThrottle(max_failures=5, clock=_Clock())
    admitted = [throttle.admit("alice", f"10.0.0.{i}") for i in range(50)]
    assert sum(wait is None for wait in admitted) == 5


def test_memory_is_bounded_under_a_spray_of_names():
    throttle = LoginThrottle(max_failures=5, max_client_failures=10**9, max_entries=100, clock=_Clock())
    for i in range(1000):
        _fail(throttle, account=f"user{i}")
    assert throttle.tracked() <= 100
    assert throttle.admit("user999", "10.0.0.1") is None  # recent entries survive
    throttle.finished("user999", "10.0.0.1")


# -- through the app ---------------------------------------------------------------------------


def _signed_in(client) -> bool:
    return client.get("/", follow_redirects=False).status_code == 200


def test_thirty_wrong_passwords_then_the_right_one_is_still_refused(app):
    from fastapi.testclient import TestClient

    clock = _Clock()
    app.state.login_throttle._clock = clock
    with TestClient(app) as client:
        statuses = [sign_in(client, "alice", f"wrong-password-{i}").status_code for i in range(30)]
        assert statuses == [401] * 5 + [429] * 25
        refused = sign_in(client, "alice")
        assert refused.status_code == 429
        assert "too many failed sign-ins" in refused.text and "try again in 5 minutes" in refused.text
        assert int(refused.headers["retry-after"]) == 300
        assert not _signed_in(client)

        clock.now += 301  # the lockout expires
        assert sign_in(client, "alice").status_code == 303
        assert _signed_in(client)


def test_a_success_resets_the_count_in_the_app(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        for _ in range(4):
            assert sign_in(client, "alice", "wrong-password").status_code == 401
        assert sign_in(client, "alice").status_code == 303
        for _ in range(4):
            assert sign_in(client, "alice", "wrong-password").status_code == 401
        assert sign_in(client, "alice").status_code == 303


def test_unknown_names_are_throttled_like_real_ones(app):
    """Otherwise a 429 would tell an attacker which names exist."""
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        statuses = [sign_in(client, "mallory", "wrong-password").status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]


def test_password_verification_runs_off_the_event_loop(app, monkeypatch):
    from fastapi.testclient import TestClient

    import forgerl.review.app as app_module

    seen: list[bool] = []
    real = app_module.verify_password

    def recording(password_hash: str, password: str) -> bool:
        try:
            asyncio.get_running_loop()
            seen.append(True)
        except RuntimeError:
            seen.append(False)
        return real(password_hash, password)

    monkeypatch.setattr(app_module, "verify_password", recording)
    with TestClient(app) as client:
        assert sign_in(client, "alice").status_code == 303
    assert seen == [False]  # verified in a worker thread, not on the loop


def test_secure_cookies_keep_httponly_and_samesite(run_dir):
    from fastapi.testclient import TestClient

    from forgerl.review.app import create_app

    with TestClient(create_app(run_dir, secure_cookies=True), base_url="https://testserver") as client:
        login_page = client.get("/login")
        assert "secure" in login_page.headers["set-cookie"].lower()
        response = sign_in(client)
        cookie = response.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        assert "max-age=31536000" in client.get("/").headers["strict-transport-security"]


def test_plain_local_cookies_are_not_secure(client):
    cookie = sign_in(client).headers["set-cookie"].lower()
    assert "secure" not in cookie
    assert "strict-transport-security" not in client.get("/login").headers


# -- the CLI: remote needs TLS ----------------------------------------------------------------

runner = CliRunner()


@pytest.fixture()
def served(monkeypatch):
    """Stands in for uvicorn.run: records what the CLI would serve instead of serving it."""
    import uvicorn

    calls: list[tuple[object, dict]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    return calls


def _review(*args: str):
    from forgerl.cli.review import review_app

    return runner.invoke(review_app, list(args))


def _refused(capsys, *args: str) -> str:
    """`forgerl review ARGS` through the CLI's error path: exit 2, the error style, no traceback."""
    from forgerl.cli.main import run_cli

    assert run_cli(["review", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_remote_without_tls_is_refused(run_dir, served, capsys):
    err = _refused(capsys, "--run", str(run_dir), "--host", "0.0.0.0", "--allow-remote")
    assert "--ssl-certfile" in err and "--behind-tls-proxy" in err
    assert served == []


def test_half_a_tls_configuration_is_refused(run_dir, tmp_path, served, capsys):
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    assert "--ssl-keyfile" in _refused(capsys, "--run", str(run_dir), "--ssl-certfile", str(cert))
    err = _refused(capsys, "--run", str(run_dir), "--ssl-certfile", str(cert), "--ssl-keyfile", str(tmp_path / "nope.pem"))
    assert "nope.pem" in err
    assert served == []


def test_remote_behind_a_tls_proxy_serves_secure_cookies(run_dir, served):
    from fastapi.testclient import TestClient

    result = _review("--run", str(run_dir), "--host", "0.0.0.0", "--allow-remote", "--behind-tls-proxy")
    assert result.exit_code == 0, result.output
    (app, kwargs), = served
    assert kwargs["host"] == "0.0.0.0" and kwargs["proxy_headers"] is True
    with TestClient(app, base_url="https://testserver") as client:
        assert "secure" in sign_in(client).headers["set-cookie"].lower()


def test_remote_with_tls_files_passes_them_to_uvicorn(run_dir, tmp_path, served):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("c")
    key.write_text("k")
    result = _review("--run", str(run_dir), "--host", "0.0.0.0", "--allow-remote",
                     "--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    assert result.exit_code == 0, result.output
    (app, kwargs), = served
    assert kwargs["ssl_certfile"] == str(cert) and kwargs["ssl_keyfile"] == str(key)
    assert "https://" in result.output
    assert app.state.secure_cookies is True


def test_loopback_without_tls_still_serves_plain(run_dir, served):
    result = _review("--run", str(run_dir))
    assert result.exit_code == 0, result.output
    (app, kwargs), = served
    assert kwargs.get("ssl_certfile") is None and app.state.secure_cookies is False
