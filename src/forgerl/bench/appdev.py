"""`forgerl bench appdev-verifier`: what the AppDev rubric executor costs per episode.

Three small apps that pass their rubric (asserted: a bench of a broken verifier measures nothing):
a one-widget page (a tip calculator, 6 items), a multi-view app with state (a todo list with
filters and persistence, 5 items) and a Python-server app (3 items). Each is verified `repeats`
times; the table shows the median seconds per verification (one Chromium start, the gate and
every item, sandbox set-up and teardown included) and the median of the browser's peak memory
(summed PSS of its sandbox's processes). Absolute times depend on the machine: run it quiet.
"""

from __future__ import annotations

import asyncio
import statistics

from forgerl.envs.appdev.rubric import PHONE, Rubric, RubricItem, ServerSpec, Step

_STYLE = "<style>body{font-family:sans-serif;margin:16px;color:#111;background:#fff}</style>"

TIP = f"""<!doctype html><html><head><meta name=viewport content="width=device-width">{_STYLE}</head><body>
<input id=bill type=number> <input id=pct type=number> <button id=calc>Tip</button> <p>Tip: <span id=tip></span></p>
<script>document.getElementById('calc').onclick = () => {{
  const b = parseFloat(document.getElementById('bill').value), p = parseFloat(document.getElementById('pct').value);
  document.getElementById('tip').textContent = (b * p / 100).toFixed(2); }};</script></body></html>"""

TODO = f"""<!doctype html><html><head><meta name=viewport content="width=device-width">{_STYLE}</head><body>
<input id=new> <button id=add>Add</button> <button id=show-all>All</button> <button id=show-done>Done</button>
<ul id=list></ul><script>
let todos = JSON.parse(localStorage.getItem('todos') || '[]'), only = false;
const save = () => localStorage.setItem('todos', JSON.stringify(todos));
function render() {{
  const ul = document.getElementById('list'); ul.innerHTML = '';
  todos.filter(t => !only || t.done).forEach(t => {{
    const li = document.createElement('li'), box = document.createElement('input'), s = document.createElement('span');
    box.type = 'checkbox'; box.checked = t.done; box.onchange = () => {{ t.done = box.checked; save(); render(); }};
    s.textContent = t.text; li.append(box, s); ul.append(li); }});
}}
document.getElementById('add').onclick = () => {{
  const i = document.getElementById('new'); if (i.value.trim()) todos.push({{text: i.value.trim(), done: false}});
  i.value = ''; save(); render(); }};
document.getElementById('show-all').onclick = () => {{ only = false; render(); }};
document.getElementById('show-done').onclick = () => {{ only = true; render(); }};
render();</script></body></html>"""

SERVER = """import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse
PAGE = open("index.html", "rb").read()
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/api/sum":
            q = parse_qs(url.query)
            body, kind = json.dumps({"sum": float(q["a"][0]) + float(q["b"][0])}).encode(), "application/json"
        else:
            body, kind = PAGE, "text/html"
        self.send_response(200); self.send_header("Content-Type", kind); self.end_headers(); self.wfile.write(body)
    do_HEAD = do_GET
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""
SUM_PAGE = f"""<!doctype html><html><head>{_STYLE}</head><body><input id=a> + <input id=b> <button id=go>=</button>
<span id=sum></span><script>document.getElementById('go').onclick = async () => {{
  const r = await fetch(`/api/sum?a=${{document.getElementById('a').value}}&b=${{document.getElementById('b').value}}`);
  document.getElementById('sum').textContent = String((await r.json()).sum); }};</script></body></html>"""


def _s(action: str, selector: str | None = None, value: str | None = None, **kw) -> Step:
    return Step(action=action, selector=selector, value=value, **kw)


def _flow(id: str, *steps: Step) -> RubricItem:  # noqa: A002
    return RubricItem(id=id, layer="interaction", description=id, steps=list(steps))


def _visual(id: str, check: str, **kw) -> RubricItem:  # noqa: A002
    return RubricItem(id=id, layer="visual", description=id, check=check, **kw)


def apps() -> dict[str, tuple[dict[str, str], Rubric]]:
    """name -> (files, rubric), each passing every item."""
    tip = Rubric(items=[
        _flow("a", _s("fill", "#bill", "80"), _s("fill", "#pct", "15"), _s("click", "#calc"), _s("expect_text", "#tip", "12.00")),
        _flow("b", _s("fill", "#bill", "10"), _s("fill", "#pct", "20"), _s("click", "#calc"), _s("expect_text", "#tip", "2.00")),
        _visual("scroll", "no_horizontal_scroll", viewport=PHONE),
        _visual("on_screen", "on_screen", selectors=["#bill", "#pct", "#calc"], viewport=PHONE),
        _visual("overlap", "no_overlap"),
        _visual("contrast", "contrast_aa"),
    ])
    add = (_s("fill", "#new", "milk"), _s("click", "#add"), _s("fill", "#new", "tea"), _s("click", "#add"))
    todo = Rubric(items=[
        _flow("add", *add, _s("expect_order", "#list li", values=["milk", "tea"])),
        _flow("persist", *add, _s("reload"), _s("expect_count", "#list li", "2")),
        _flow("filter", *add, _s("check", "#list li:nth-child(2) input"), _s("click", "#show-done"),
              _s("expect_order", "#list li", values=["tea"])),
        _flow("empty", _s("expect_count", "#list li", "0")),
        _visual("contrast", "contrast_aa", viewport=PHONE),
    ])
    backend = Rubric(server=ServerSpec(kind="python"), items=[
        _flow("sum", _s("fill", "#a", "2"), _s("fill", "#b", "3"), _s("click", "#go"), _s("expect_text", "#sum", "5")),
        _flow("sum2", _s("fill", "#a", "1.5"), _s("fill", "#b", "1"), _s("click", "#go"), _s("expect_text", "#sum", "2.5")),
        _visual("on_screen", "on_screen", selectors=["#a", "#b", "#go"]),
    ])
    return {"one-widget (tip)": ({"index.html": TIP}, tip),
            "multi-view (todo)": ({"index.html": TODO}, todo),
            "python server (sum)": ({"index.html": SUM_PAGE, "server.py": SERVER}, backend)}


async def _measure(repeats: int) -> list[dict]:
    from forgerl.envs.appdev.executor import verify_app  # heavy: Playwright

    rows = []
    for name, (files, rubric) in apps().items():
        seconds, peaks = [], []
        for _ in range(repeats):
            report = await verify_app(files, rubric)
            if report.outcome != 1.0:
                bad = [f"{v.id}: {v.reason}" for v in [report.gate, *report.items] if not v.passed]
                raise RuntimeError(f"the bench app {name!r} should pass every item, but: {bad}")
            seconds.append(report.seconds)
            peaks.append(report.browser_peak_rss_mb or 0.0)
        rows.append({"app": name, "items": len(rubric.items), "repeats": repeats,
                     "median_s": statistics.median(seconds), "min_s": min(seconds),
                     "median_peak_mb": statistics.median(peaks)})
    return rows


def run_appdev_bench(repeats: int = 5, print_table: bool = True) -> list[dict]:
    """Verify each bench app `repeats` times; print and return the medians."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    rows = asyncio.run(_measure(repeats))
    if print_table:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"AppDev rubric executor: seconds per verification and browser memory ({repeats} repeats)")
        for col in ("app", "items", "median s", "min s", "median peak MB (PSS)"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(r["app"], str(r["items"]), f"{r['median_s']:.2f}", f"{r['min_s']:.2f}", f"{r['median_peak_mb']:.0f}")
        Console().print(table)
    return rows
