"""AppDev verifier evidence in the review app (issue 21 item 3): the per-item table with every
string escaped, screenshots inline, and an image route that serves only PNG files inside the
trajectory's evidence directory (the verdicts are hostile: the app under test wrote the DOM and
console, a model verifier the reasons and screenshot names)."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import threading
import time
import zlib

import pytest

from forgerl.envs.appdev.rubric import ItemVerdict
from forgerl.review.evidence import appdev_view, read_screenshot, screenshot_names
from forgerl.store import TrajectoryStore
from forgerl.types import Message, Trajectory

from .conftest import PASSWORDS, sign_in


def _png(width: int = 40, height: int = 20) -> bytes:
    """A real, decodable RGB PNG of one colour (so a browser can show it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\x20\x90\x40" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG = _png()
HOSTILE_DOM = '<div id="total">$42.00</div><script>alert("dom")</script><img src=x onerror=alert(1)>'
HOSTILE_CONSOLE = '</pre><script>alert("console")</script>'
HOSTILE_REASON = 'expected "$42.00" <b onmouseover=alert(2)>got</b>'
SHOTS = ["item-total.png",             # 0: a real PNG inside the directory: served
         "../outside.png",             # 1: a PNG one level up: refused
         "/etc/hostname.png",          # 2: absolute: refused
         "link.png",                   # 3: a symlink to the PNG outside: refused
         "sub/linked/x.png",           # 4: a symlinked directory on the way: refused
         "notes.txt",                  # 5: not .png: refused
         "fake.png",                   # 6: .png but not a PNG: refused
         "missing.png",                # 7: cleaned up: refused
         'q"><script>alert(3)</script>.png',  # 8: a hostile name: shown escaped, not there
         "sub/./item-total.png"]       # 9: a dot segment: refused


def _verdict(id_: str, layer: str, passed: bool, **kw) -> dict:
    return ItemVerdict(id=id_, layer=layer, passed=passed, **kw).model_dump(mode="json")


@pytest.fixture()
def evidence(tmp_path):
    root = tmp_path / "evidence"
    (root / "sub").mkdir(parents=True)
    (root / "item-total.png").write_bytes(PNG)
    (tmp_path / "outside.png").write_bytes(PNG)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.png").write_bytes(PNG)
    os.symlink(tmp_path / "outside.png", root / "link.png")
    os.symlink(tmp_path / "elsewhere", root / "sub" / "linked")
    (root / "notes.txt").write_text("not an image")
    (root / "fake.png").write_text("<svg onload=alert(1)>")
    return {"gate": _verdict("execution", "execution", True, reason="served and loaded", console=["[log] ready"]),
            "items": [_verdict("total", "interaction", False, reason=HOSTILE_REASON,
                               actions=["fill #bill 120", 'click "<button>"'], dom_excerpt=HOSTILE_DOM,
                               console=[HOSTILE_CONSOLE], screenshots=SHOTS[:8]),
                      _verdict("phone<scroll>", "visual", True, measured={"document_width": 375},
                               screenshots=SHOTS[8:])],
            "evidence_dir": str(root), "verifier": "rubric-executor", "seconds": 2.5}


def _add_appdev_trajectory(run_dir, evidence) -> None:
    """Stored as episodes record it: the family's evidence under `verifier` of the composed reward's."""
    composed = {"verifier": evidence, "process": {"llm_calls": 2}, "weights": {"outcome": 1.0}}
    traj = Trajectory(id="traj_app", task_id="appdev-1", family="appdev", reward=0.5,
                      messages=[Message(role="user", content="build a tip calculator")],
                      metadata={"reward_evidence": composed})
    with TrajectoryStore(run_dir) as store:
        store.add_trajectory(traj, store.runs()[0].id)


@pytest.fixture()
def appdev_client(run_dir, evidence):
    from fastapi.testclient import TestClient

    from forgerl.review.app import create_app

    _add_appdev_trajectory(run_dir, evidence)
    with TestClient(create_app(run_dir)) as client:
        assert sign_in(client, "alice").status_code == 303
        yield client


def test_the_verdicts_render_as_an_escaped_table_with_inline_screenshots(appdev_client):
    page = appdev_client.get("/t/traj_app")
    assert page.status_code == 200
    html = page.text
    assert "App verifier: 1 of 2 rubric items passed" in html
    table = html[html.index('id="appdev-items"'):html.index("</table>", html.index('id="appdev-items"'))]
    assert table.count('class="verdict"') == 3  # gate + two items, in order
    assert table.index(">execution<") < table.index(">total<") < table.index("phone&lt;scroll&gt;")
    assert '<td class="err">fail</td>' in table and table.count('<td class="ok">pass</td>') == 2
    for hostile in ("<script>", "<img src=x", "<b onmouseover", "</pre><script>", 'q"><script>'):
        assert hostile not in html
    assert "&lt;script&gt;alert(&#34;dom&#34;)&lt;/script&gt;" in html and "&lt;b onmouseover=alert(2)&gt;" in html
    assert "&lt;/pre&gt;&lt;script&gt;" in html and 'click &#34;&lt;button&gt;&#34;' in html
    assert '<img src="/t/traj_app/screenshot/0" alt="screenshot item-total.png"' in html
    assert html.count("<img ") == len(SHOTS)


def test_the_screenshot_route_serves_only_pngs_inside_the_evidence_directory(appdev_client):
    served = appdev_client.get("/t/traj_app/screenshot/0")
    assert served.status_code == 200 and served.content == PNG and served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"
    for index in range(1, len(SHOTS)):
        refused = appdev_client.get(f"/t/traj_app/screenshot/{index}")
        assert refused.status_code == 404 and not refused.content.startswith(b"\x89PNG"), (index, SHOTS[index])
        assert refused.headers["content-type"].startswith("text/plain")
    for index in ("10", "-1", "..%2F..%2Fetc%2Fpasswd", "0.png"):
        assert appdev_client.get(f"/t/traj_app/screenshot/{index}").status_code in (404, 422)
    assert appdev_client.get("/t/no-such/screenshot/0").status_code == 404


def test_reasons_for_refusing_name_the_rule(evidence):
    said = {}
    for index in range(len(SHOTS)):
        try:
            read_screenshot(evidence, index)
            said[SHOTS[index]] = "served"
        except Exception as exc:  # noqa: BLE001 — the message is what is checked
            said[SHOTS[index]] = str(exc)
    assert said["item-total.png"] == "served"
    assert "plain relative path" in said["../outside.png"] and "plain relative path" in said["/etc/hostname.png"]
    assert "symlink" in said["link.png"] and "symlink" in said["sub/linked/x.png"]
    assert "only .png" in said["notes.txt"] and "not a PNG" in said["fake.png"] and "not there" in said["missing.png"]
    assert "plain relative path" in said["sub/./item-total.png"]
    with pytest.raises(Exception, match="no absolute evidence directory"):
        read_screenshot({**evidence, "evidence_dir": "relative/dir"}, 0)


def test_a_signed_out_client_gets_no_screenshot(client):
    served = client.get("/t/traj_app/screenshot/0", follow_redirects=False)
    assert served.status_code == 303 and served.headers["location"].startswith("/login")


def test_other_evidence_stays_raw_json(evidence):
    assert appdev_view({"check": "answer == 42", "passed": True}) is None
    assert appdev_view({**evidence, "items": [{"id": "x", "layer": "nonsense", "passed": True}]}) is None
    assert screenshot_names({"items": "not a list"}) == []
    view = appdev_view(evidence)
    assert view is not None and [r.id for r in view.rows] == ["execution", "total", "phone<scroll>"]
    assert view.screenshots_kept and not appdev_view({**evidence, "evidence_dir": None}).screenshots_kept
    assert [s.index for r in view.rows for s in r.shots] == list(range(len(SHOTS)))


CHROMIUM = os.environ.get("FORGERL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install -y chromium)")
def test_in_a_browser_the_screenshot_shows_and_no_hostile_text_runs(run_dir, evidence):
    """Chromium under the app's CSP: the served screenshot is decoded inline, the refused ones stay
    broken images, and nothing from the DOM excerpt, console or reasons executes."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
    import uvicorn

    from forgerl.review.app import create_app


    _add_appdev_trajectory(run_dir, evidence)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(run_dir), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "the review server did not start"
            time.sleep(0.05)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            base = f"http://127.0.0.1:{port}"
            page.goto(f"{base}/t/traj_app")
            page.fill("input[name=name]", "alice")
            page.fill("input[name=password]", PASSWORDS["alice"])
            page.click("#sign-in")
            page.wait_for_selector("#appdev-items")
            page.wait_for_load_state("networkidle")
            widths = page.eval_on_selector_all(".shot img", "els => els.map(e => e.complete ? e.naturalWidth : -1)")
            page.locator("details").evaluate_all("els => els.forEach(e => e.open = true)")
            shown = page.inner_text("#appdev-items")
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)
    assert widths == [40] + [0] * (len(SHOTS) - 1)
    assert dialogs == [] and '<script>alert("dom")</script>' in shown and HOSTILE_CONSOLE in shown


def test_screenshots_of_a_removed_evidence_directory_show_as_names(run_dir, evidence, tmp_path):
    from fastapi.testclient import TestClient

    from forgerl.review.app import create_app

    _add_appdev_trajectory(run_dir, {**evidence, "evidence_dir": str(tmp_path / "cleaned-up")})
    with TestClient(create_app(run_dir)) as client:
        assert sign_in(client, "alice").status_code == 303
        html = client.get("/t/traj_app").text
    assert 'id="screenshots-gone"' in html and "<img " not in html and "screenshot item-total.png" in html
