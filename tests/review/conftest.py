"""Fixtures for the review tests: a run directory with a synthetic demo run (ops tasks × 4
rollouts), the malicious XSS trajectory, and two expert accounts; a signed-in test client."""

from __future__ import annotations

import re
import shutil

import pytest

from forgerl.review.auth import hash_password
from forgerl.review.demo import make_demo_run
from forgerl.store import TrajectoryStore

PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22"}


@pytest.fixture(scope="session")
def password_hashes():
    return {name: hash_password(pw) for name, pw in PASSWORDS.items()}


@pytest.fixture(scope="session")
def template_run_dir(tmp_path_factory, password_hashes):
    d = tmp_path_factory.mktemp("template") / "run"
    with TrajectoryStore(d) as store:
        make_demo_run(store, n_tasks=4, rollouts=3, with_malicious=True)
        for name, h in password_hashes.items():
            store.add_expert(name, h)
    return d


@pytest.fixture()
def run_dir(tmp_path, template_run_dir):
    """A fresh copy per test (copying a closed store is cheaper than fsyncing a new one)."""
    d = tmp_path / "run"
    shutil.copytree(template_run_dir, d)
    return d


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def sign_in(client, name: str = "alice", password: str | None = None):
    page = client.get("/login")
    return client.post("/login", data={"name": name, "password": password or PASSWORDS[name],
                                       "csrf_token": csrf_of(page.text), "next": "/"}, follow_redirects=False)


@pytest.fixture()
def app(run_dir):
    from forgerl.review.app import create_app

    return create_app(run_dir)


@pytest.fixture()
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


@pytest.fixture()
def alice(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        assert sign_in(c, "alice").status_code == 303
        yield c


@pytest.fixture()
def bob(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        assert sign_in(c, "bob").status_code == 303
        yield c
