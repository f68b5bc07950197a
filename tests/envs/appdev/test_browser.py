"""The real BrowserSession: Chromium and the app in their bwrap sandboxes. What counts as visible,
real input events, console and page errors, fresh storage, the visual measurements, isolation,
and whose fault a failure is. Skipped only where Chromium or Playwright is missing."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from forgerl.envs.appdev.isolation import BrowserLimits, chromium_path, tree
from forgerl.envs.appdev.rubric import PHONE, ServerSpec, Viewport
from forgerl.envs.appdev.session import ActionFailed
from forgerl.errors import VerifierError

pytest.importorskip("playwright.async_api", reason="pip install playwright (the Python package; no browser download)")
pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install -y chromium)")

VISIBILITY = """<!doctype html><html><head><style>body { margin: 8px; color: #000; background: #fff; }</style></head><body>
<p class="t" id="shown">shown</p>
<p class="t" style="position:absolute; left:-5000px">left of the page</p>
<p class="t" style="position:absolute; top:-300px">above the page</p>
<div style="height:0; overflow:hidden"><p class="t">clipped</p></div>
<p class="t" style="opacity:0">transparent</p>
<div style="opacity:0"><p class="t">inside transparent</p></div>
<p class="t" style="visibility:hidden">hidden</p>
<p class="t" style="display:none">none</p>
<p class="t" style="color:rgba(0,0,0,0)">invisible ink</p>
<p class="t" style="width:0; height:0; overflow:hidden">zero</p>
<div style="overflow:hidden; width:100px"><p class="t" style="margin-left:500px; width:100px">scrolled off</p></div>
<p class="t" style="font-size:12px">  spaced
   out  </p>
<input id="visible-input" value="v1"><input id="hidden-input" value="v2" style="display:none">
</body></html>"""

ACTIONS = """<!doctype html><html><head><style>button { display: block; }</style></head><body style="margin:0">
<button id="covered" onclick="document.getElementById('out').textContent='covered clicked'">covered</button>
<div style="position:fixed; top:0; left:0; width:300px; height:60px; z-index:5"></div>
<button id="away" style="position:absolute; left:-500px; top:100px"
  onclick="document.getElementById('out').textContent='away clicked'">away</button>
<button id="ok" style="margin-top:120px" onclick="document.getElementById('out').textContent='ok clicked'">ok</button>
<select id="pick"><option value="a">A</option><option value="b">B</option></select>
<input id="box" type="checkbox"><p id="out"></p>
<script>
console.log('hello'); console.warn('careful');
Promise.reject(new Error('nobody caught me'));
document.getElementById('box').addEventListener('change', (e) => { throw new Error('handler threw'); });
</script></body></html>"""


def run(coro):
    return asyncio.run(coro)


def test_only_what_a_user_can_see_counts():
    from forgerl.envs.appdev.browser import open_app

    async def go():
        async with open_app({"index.html": VISIBILITY}) as s:
            info = await s.open("/")
            assert info["status"] == 200 and not info["errors"] and not info["console_errors"]
            texts = await s.visible_texts(".t")
            assert await s.value("#visible-input") == "v1"
            with pytest.raises(ActionFailed, match="no visible element"):
                await s.value("#hidden-input")
            assert await s.attribute("#hidden-input", "value") == "v2"  # attributes are plain DOM reads
            assert "<p class=\"t\" id=\"shown\">shown</p>" == await s.dom("#shown")
            return texts

    assert run(go()) == ["shown", "spaced out"]


def test_actions_are_real_input_events_and_errors_are_collected_per_open(tmp_path):
    from forgerl.envs.appdev.browser import open_app

    async def go():
        async with open_app({"index.html": ACTIONS}, limits=BrowserLimits(action_timeout_s=1.5),
                            evidence_dir=tmp_path) as s:
            info = await s.open("/")
            assert info["errors"] == ["nobody caught me"] or "nobody caught me" in info["errors"][0]
            assert s.console()[:2] == ["log: hello", "warning: careful"]
            with pytest.raises(ActionFailed, match="covered"):
                await s.click("#covered")  # the overlay receives the pointer
            with pytest.raises(ActionFailed, match="away"):
                await s.click("#away")  # outside the page: cannot be scrolled to
            assert await s.visible_texts("#out") == []
            await s.click("#ok")
            assert await s.visible_texts("#out") == ["ok clicked"]
            await s.select("#pick", "b")
            assert await s.value("#pick") == "b"
            await s.check("#box")
            assert any("handler threw" in e for e in s.page_errors())
            shot = await s.screenshot("after clicks/../x")
            assert "/" not in shot and (tmp_path / shot).read_bytes()[:4] == b"\x89PNG"
            await s.open("/", viewport=PHONE)
            assert not any("handler threw" in e for e in s.page_errors())  # a new log per open
            with pytest.raises(ActionFailed, match="nope"):
                await s.fill("#nope", "x")

    run(go())


def test_fresh_storage_per_open_and_kept_storage_on_request():
    page = ("<p id=x></p><script>document.getElementById('x').textContent = [localStorage.getItem('a'), "
            "sessionStorage.getItem('b'), document.cookie, window.name].join('|'); localStorage.setItem('a','L'); "
            "sessionStorage.setItem('b','S'); document.cookie='c=C'; window.name='W'; "
            "addEventListener('pagehide', () => localStorage.setItem('a', 'unload'));</script>")
    from forgerl.envs.appdev.browser import open_app

    async def go():
        seen = []
        async with open_app({"index.html": page}) as s:
            for fresh in (True, True, False, True):
                await s.open("/", fresh_storage=fresh)
                seen += await s.visible_texts("#x")
        return seen

    assert run(go()) == ["|||", "|||", "unload|S|c=C|W", "|||"]


VISUAL = """<!doctype html><html><head><style>
body { margin: 0; background: #fff; font-size: 16px; }
.grey77 { color: #777; } .grey76 { color: #767676; } .big { color: #949494; font-size: 24px; }
.dark { background: linear-gradient(#000, #333); color: #fff; }
</style></head><body>
<p class="grey76">4.54:1 passes</p>
<div class="dark"><p>white on a dark gradient</p></div>
<p class="big">large text needs 3:1 (#949494 is 3.03)</p>
<button id="one" style="position:absolute; top:300px; left:10px; width:100px">one</button>
<button id="two" style="position:absolute; top:305px; left:60px; width:100px">two</button>
<div id="wide" style="width:600px">wide</div>
</body></html>"""


def test_visual_measurements():
    from forgerl.envs.appdev.browser import open_app

    async def go():
        async with open_app({"index.html": VISUAL, "grey.html": VISUAL.replace('class="grey76"', 'class="grey77"')}) as s:
            await s.open("/")
            good = await s.measure("contrast_aa")
            overlap = await s.measure("no_overlap")
            wide_desktop = await s.measure("no_horizontal_scroll")
            on = await s.measure("on_screen", ["#one", "#wide", "#missing"])
            await s.open("/grey.html")
            bad = await s.measure("contrast_aa")
            await s.open("/", viewport=PHONE)
            wide_phone = await s.measure("no_horizontal_scroll")
            return good, bad, overlap, wide_desktop, wide_phone, on

    good, bad, overlap, wide_desktop, wide_phone, on = run(go())
    assert good["passed"] and good["worst_ratio"] == pytest.approx(3.03, abs=0.01)
    assert good["offenders"] == [] and good["texts"] == 6
    # #777 on white is 4.48:1, just under AA; the large #949494 text (3.03:1) passes at 3:1
    assert not bad["passed"] and bad["offenders"] == ["p.grey77: contrast 4.48 < 4.5"]
    assert not overlap["passed"] and overlap["offenders"] == ["button#one overlaps button#two"]
    assert wide_desktop["passed"] and not wide_phone["passed"] and wide_phone["document_width"] == 600
    assert not on["passed"] and on["offenders"] == ["#missing"]


class _Host(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self):  # noqa: N802
        _Host.hits += 1
        self.send_response(200)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(b"host secret")

    def log_message(self, *args):
        pass


def test_the_page_cannot_reach_the_host_or_the_internet():
    host = HTTPServer(("127.0.0.1", 0), _Host)
    port = host.server_address[1]
    threading.Thread(target=host.serve_forever, daemon=True).start()
    page = f"""<p id=out>pending</p><script>
    Promise.allSettled([fetch('http://127.0.0.1:{port}/'), fetch('http://10.0.2.2:{port}/'), fetch('https://example.com/')])
      .then(rs => document.getElementById('out').textContent = rs.map(r => r.status).join(','));
    </script>"""
    from forgerl.envs.appdev.browser import open_app

    async def go():
        async with open_app({"index.html": page}, limits=BrowserLimits(action_timeout_s=8)) as s:
            await s.open("/")
            for _ in range(80):
                texts = await s.visible_texts("#out")
                if texts != ["pending"]:
                    return texts
                await asyncio.sleep(0.1)
            return texts

    try:
        # sanity: the host server answers from the host
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"GET / HTTP/1.0\r\n\r\n")
            answer = b""
            while chunk := c.recv(1000):
                answer += chunk
            assert b"host secret" in answer
        assert run(go()) == ["rejected,rejected,rejected"]
        assert _Host.hits == 1  # only our own sanity request
    finally:
        host.shutdown()


def test_the_snoop_check_would_see_the_browser_if_it_were_not_isolated():
    """py_snoop's detection, run on the host while a browser is up, does find Chromium: so its
    "none" from inside the app's sandbox (test_verdicts) means isolation, not a blind check."""
    import importlib.util

    from forgerl.envs.appdev.browser import open_app

    source = (Path(__file__).parent / "apps" / "py_snoop" / "server.py").read_text()
    code = source.split("def write_into_fds")[0]
    spec = importlib.util.spec_from_loader("snoop_probe", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(Path(__file__).parent / "apps" / "py_snoop" / "server.py")
    exec(compile(code, "snoop_probe", "exec"), module.__dict__)  # noqa: S102 — our own fixture

    async def go():
        async with open_app({"index.html": "<p>x</p>"}):
            return module.foreign_processes()

    assert any(":chromium" in p or ":chrome" in p for p in run(go()))


def test_a_browser_that_cannot_start_is_an_infrastructure_error(monkeypatch):
    from forgerl.envs.appdev.browser import open_app

    monkeypatch.setenv("FORGERL_CHROMIUM", "/bin/false")

    async def go():
        async with open_app({"index.html": "<p>x</p>"}, limits=BrowserLimits(start_timeout_s=5)):
            pass

    with pytest.raises(VerifierError, match="Chromium did not start"):
        run(go())


def test_a_browser_killed_midway_is_an_infrastructure_error():
    import os
    import signal

    from forgerl.envs.appdev.browser import open_app

    async def go():
        async with open_app({"index.html": "<p id=x>x</p>"}) as s:
            await s.open("/")
            root = int(Path(s.watch.pid_file).read_text())
            for pid in tree(root):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.5)
            await s.visible_texts("#x")

    with pytest.raises(VerifierError, match="Chromium"):
        run(go())


def test_an_app_server_that_never_answers_fails_the_load_not_the_verifier():
    from forgerl.envs.appdev.browser import open_app

    async def go():
        async with open_app({"server.py": "import time\ntime.sleep(60)\n"}, ServerSpec(kind="python"),
                            limits=BrowserLimits(start_timeout_s=1.5, load_timeout_s=2)) as s:
            with pytest.raises(ActionFailed, match="loading / failed"):
                await s.open("/", viewport=Viewport(width=800, height=600))
            return s.server_note()

    assert "did not answer on port 8000" in run(go())
