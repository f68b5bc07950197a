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


LONG = "verifier_process_component_with_a_very_long_name_and_no_spaces_at_all"
WIDE_BREAKDOWN = {f"{LONG}_{i:02d}": value for i, value in enumerate(
    [1e300, -123456789.123456, 0.5, 3.0e-12, 98765432109876.5] * 6)}


def _store_wide_pair(run_dir) -> None:
    """Two trajectories of one task with 30 long-named reward components and huge numbers; the
    second ends in a submit tool call (the final reply is the submitted answer)."""
    from forgerl.types import Message, ToolCall, Trajectory

    def traj(tid: str, last: Message) -> Trajectory:
        return Trajectory(id=tid, task_id="wide-task", group_id="wide-task", messages=[
            Message(role="user", content="Find the total weight of Ann's basket."), last],
            reward=1e300, reward_breakdown=WIDE_BREAKDOWN, metadata={"family": "tool-reasoning"})

    submit = Message(role="assistant", content="The basket weighs 7.25 kg, so I submit that.",
                     tool_calls=[ToolCall(id="s1", name="submit_answer", arguments={"answer": 7.25})])
    with TrajectoryStore(run_dir) as store:
        store.add_trajectories([traj("wide_0", Message(role="assistant", content="It weighs 7.25 kg.")),
                                traj("wide_1", submit)], "demo")


def _overflow(page) -> dict:
    """How far each reward strip and its items stick out of their boxes (0 everywhere = none)."""
    return page.evaluate("""() => {
        const strips = [...document.querySelectorAll('.breakdown')];
        const out = {strips: strips.length, items: 0, worst_scroll: 0, worst_item: 0, untitled_cut: 0,
                     page: document.documentElement.scrollWidth - document.documentElement.clientWidth};
        const beyond = (r, box) => Math.max(r.right - box.right, box.left - r.left);
        for (const s of strips) {
            out.worst_scroll = Math.max(out.worst_scroll, s.scrollWidth - s.clientWidth);
            const box = s.getBoundingClientRect();
            out.worst_item = Math.max(out.worst_item, beyond(box, s.parentElement.getBoundingClientRect()));
            for (const item of s.querySelectorAll('*')) {
                out.items += 1;
                out.worst_item = Math.max(out.worst_item, beyond(item.getBoundingClientRect(), box));
                if (item.scrollWidth > item.clientWidth && !item.title) out.untitled_cut += 1;
            }
        }
        return out;
    }""")


@pytest.mark.parametrize("width", [1400, 900])
def test_reward_strip_stays_inside_its_box(server, browser, run_dir, tmp_path, width):
    _store_wide_pair(run_dir)
    page = browser.new_page(viewport={"width": width, "height": 1000})
    _sign_in(page, server, "alice", "/t/wide_1")
    for path in ("/t/wide_1", "/compare?a=wide_0&b=wide_1"):
        page.goto(server + path)
        page.screenshot(path=str(tmp_path / f"strip-{width}-{path.split('?')[0].strip('/').replace('/', '-')}.png"),
                        full_page=True)
        got = _overflow(page)
        assert got["strips"] >= 1 and got["items"] >= 30, got
        assert got["worst_scroll"] <= 0 and got["worst_item"] <= 0.5 and got["page"] <= 0, (path, got)
        assert got["untitled_cut"] == 0, (path, got)  # whatever is cut short has its full text as a tooltip
    # a truncated name keeps the whole name in its tooltip
    titles = page.eval_on_selector_all(".breakdown .rc-name", "els => els.map(e => e.title)")
    assert f"{LONG}_00" in titles
    shown = page.eval_on_selector_all(".breakdown .rc-name", "els => els.map(e => e.innerText)")
    assert len(set(shown)) == len(WIDE_BREAKDOWN)  # shortened in the middle: still tells them apart
    values = page.eval_on_selector_all(".breakdown .rc-value", "els => els.map(e => e.title)")
    assert "1e+300" in values
    print("screenshots in", tmp_path)


def test_final_reply_of_a_submit_episode(server, browser, run_dir):
    _store_wide_pair(run_dir)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    _sign_in(page, server, "alice", "/t/wide_1")
    assert page.inner_text("#final-heading") == "Submitted answer"
    assert page.inner_text("#final-reply") == "7.25"
    assert "submit_answer" in page.inner_text("#deliverable")
    page.goto(server + "/compare?a=wide_0&b=wide_1")
    assert page.locator("#final-heading").all_inner_texts() == ["Final reply", "Submitted answer"]
