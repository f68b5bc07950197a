"""End-to-end in a real browser: Playwright driving Debian's Chromium headless (no browser download;
`executable_path` points at the system chromium). Skipped where chromium or playwright is missing.

Set FORGERL_UPDATE_SCREENSHOTS=1 to write the README screenshots to docs/img/.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from forgerl.store import TrajectoryStore

from .conftest import PASSWORDS

CHROMIUM = os.environ.get("FORGERL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytest.importorskip("playwright.sync_api", reason="pip install playwright (the Python package; no browser download)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install -y chromium)")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"


@pytest.fixture()
def server(run_dir):
    import uvicorn

    from forgerl.review.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(run_dir), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the review server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture()
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


def _sign_in(page, base: str, name: str, path: str = "/") -> None:
    page.goto(base + path)
    assert "/login" in page.url
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("#sign-in")
    page.wait_for_load_state()


def _score(page, scores: dict[str, int]) -> None:
    for item, value in scores.items():
        page.check(f"input[name=score_{item}][value='{value}']")
    page.click("#save-score")
    page.wait_for_selector("#flash")


def test_sign_in_label_compare_and_agreement(server, browser, run_dir):
    alice = browser.new_page(viewport={"width": 1400, "height": 1000})
    _sign_in(alice, server, "alice")
    alice.click("text=demo")  # open the run
    alice.click("a[href='/t/ops_001_0']")
    assert alice.locator(".call").count() >= 2 and "Verifier evidence" in alice.content()
    _score(alice, {"correctness": 5, "process": 4, "communication": 3})
    assert alice.inner_text("#flash") == "score saved"
    assert "alice" in alice.inner_text("#labels")
    if os.environ.get("FORGERL_UPDATE_SCREENSHOTS"):
        alice.screenshot(path=str(SCREENSHOTS / "review-trajectory.png"), full_page=False)

    alice.click("a[href^='/compare?a=ops_001_0&b=ops_001_1']")
    alice.check("input[name=preferred][value=ops_001_1]")
    alice.fill("textarea[name=reason]", "B checks before it deletes")
    alice.click("#save-preference")
    alice.wait_for_selector("#flash")
    assert alice.inner_text("#flash") == "preference saved"
    if os.environ.get("FORGERL_UPDATE_SCREENSHOTS"):
        alice.screenshot(path=str(SCREENSHOTS / "review-ab.png"), full_page=False)

    bob = browser.new_context().new_page()
    _sign_in(bob, server, "bob", "/t/ops_001_0")
    assert bob.url.endswith("/t/ops_001_0")  # back where sign-in was asked for
    _score(bob, {"correctness": 5, "process": 2, "communication": 3})
    bob.goto(server + "/agreement")
    rows = bob.inner_text("#item-agreement")
    assert "correctness\t1\t100%" in rows and "process\t1\t0%\t0%\t2.00" in rows
    assert "alice · bob" in bob.inner_text("#pair-agreement")

    with TrajectoryStore(run_dir) as store:
        labels = store.labels("ops_001_0", current_only=True)
    expected = {("alice", "rubric"), ("alice", "preference"), ("bob", "rubric")}
    assert {(lab.expert, lab.kind) for lab in labels} == expected


def test_malicious_trajectory_runs_no_script(server, browser):
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    _sign_in(page, server, "alice", "/t/evil_traj?tokens=1")
    page.wait_for_load_state("networkidle")
    assert dialogs == []
    assert page.locator("script").count() == 0 and page.locator("main img").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0
    assert '<script>alert("xss")</script>' in page.inner_text("#final-reply")
    assert "[click me](javascript:alert(2))" in page.inner_text("#final-reply")
