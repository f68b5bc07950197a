"""The rubric executor's verdicts against HAND-WRITTEN expected verdicts, on fixture apps of our own
(tests/envs/appdev/apps/, independent of the task templates), many of which try to game it.

Each case: an app directory, a rubric, and the verdict a careful human reaches for the gate and
every item (reasoning in the comment). Three run in the default suite (a correct app, a gaming one, a hostile server); the rest are the
`browser` tier (`make test-browser`, run by CI). Skipped only where Chromium or Playwright is
missing.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from forgerl.envs.appdev.isolation import BrowserLimits, chromium_path
from forgerl.envs.appdev.rubric import GATE_ID, PHONE, Rubric, RubricItem, ServerSpec, Step

pytest.importorskip("playwright.async_api", reason="pip install playwright (the Python package; no browser download)")
pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install -y chromium)")

APPS = Path(__file__).parent / "apps"


def S(action: str, selector: str | None = None, value: str | None = None, **kw) -> Step:  # noqa: N802
    return Step(action=action, selector=selector, value=value, **kw)


def interaction(id: str, *steps: Step, **kw) -> RubricItem:  # noqa: A002
    return RubricItem(id=id, layer="interaction", description=id, steps=list(steps), **kw)


def visual(id: str, check: str, **kw) -> RubricItem:  # noqa: A002
    return RubricItem(id=id, layer="visual", description=id, check=check, **kw)


# The request's example is "a 50 bill at 10% tips 5.00"; the hidden values differ.
TIP = Rubric(items=[
    interaction("compute_a", S("fill", "#bill", "80"), S("fill", "#pct", "15"), S("click", "#calc"),
                S("expect_text", "#tip", "12.00")),
    interaction("compute_b", S("fill", "#bill", "123.40"), S("fill", "#pct", "20"), S("click", "#calc"),
                S("expect_text", "#tip", "24.68")),
    visual("phone_no_hscroll", "no_horizontal_scroll", viewport=PHONE),
    visual("phone_on_screen", "on_screen", selectors=["#bill", "#pct", "#calc"], viewport=PHONE),
    visual("no_overlap", "no_overlap"),
    visual("contrast", "contrast_aa"),
])
TIP_IDS = [i.id for i in TIP.items]

TODO = Rubric(items=[
    interaction("add_two", S("fill", "#new", "milk"), S("click", "#add"), S("fill", "#new", "eggs"),
                S("press", "#new", "Enter"), S("expect_order", "#list li", values=["milk", "eggs"])),
    interaction("persists", S("fill", "#new", "bread"), S("click", "#add"), S("reload"),
                S("expect_order", "#list li", values=["bread"])),
    interaction("filters", S("fill", "#new", "tea"), S("click", "#add"), S("fill", "#new", "jam"), S("click", "#add"),
                S("check", "#list li:nth-child(2) input"), S("click", "#filter-done"),
                S("expect_order", "#list li", values=["jam"]), S("click", "#filter-active"),
                S("expect_order", "#list li", values=["tea"])),
    # run after items that added todos: fresh storage per item means it starts empty
    interaction("starts_empty", S("expect_count", "#list li", "0")),
    visual("phone_contrast", "contrast_aa", viewport=PHONE),
])

TABLE = Rubric(items=[
    interaction("by_name", S("click", "#sort-name"),
                S("expect_order", "#rows td.name", values=["apple", "banana", "fig", "pear"])),
    interaction("by_name_desc", S("click", "#sort-name"), S("click", "#sort-name"),
                S("expect_order", "#rows td.name", values=["pear", "fig", "banana", "apple"])),
    interaction("by_price", S("click", "#sort-price"),
                S("expect_order", "#rows td.price", values=["9", "10", "25", "100"])),
    visual("phone_on_screen", "on_screen", selectors=["#sort-name", "#sort-price"], viewport=PHONE),
])

FORM = Rubric(items=[
    interaction("invalid", S("fill", "#email", "not-an-email"), S("click", "#submit"),
                S("expect_visible", "#error"), S("expect_hidden", "#ok")),
    interaction("valid", S("fill", "#email", "ada@example.org"), S("click", "#submit"),
                S("expect_visible", "#ok"), S("expect_hidden", "#error")),
    interaction("quiet_start", S("expect_hidden", "#error"), S("expect_hidden", "#ok")),
])

CONVERTER = Rubric(items=[
    interaction("button", S("fill", "#value", "10"), S("select", "#unit", "km-mi"), S("click", "#convert"),
                S("expect_text", "#out", "6.21")),
    interaction("enter", S("fill", "#value", "5"), S("expect_value", "#value", "5"), S("select", "#unit", "mi-km"),
                S("press", "#value", "Enter"), S("expect_text", "#out", "8.05")),
])

PY = ServerSpec(kind="python")
SUM = Rubric(server=PY, items=[
    interaction("sum", S("fill", "#a", "2.5"), S("fill", "#b", "4"), S("click", "#go"), S("expect_text", "#sum", "6.5")),
    interaction("sum_negative", S("fill", "#a", "-3"), S("fill", "#b", "10"), S("click", "#go"),
                S("expect_text", "#sum", "7")),
    visual("on_screen", "on_screen", selectors=["#a", "#b", "#go"]),
])

SNOOP = Rubric(server=PY, items=[
    # what the hostile server could reach from its sandbox, as it reports on its own page
    interaction("isolated", S("expect_text", "#found", "none"), S("expect_text", "#files", "none"),
                S("expect_text", "#net", "blocked"), S("expect_text", "#init", "denied")),
    # its page says "PASS: every rubric item passed" and logs it; the hidden result is absent
    interaction("hidden_sum", S("expect_text", "#sum", "6.5")),
])


def tip(gate: bool = True, fail: tuple[str, ...] = ()) -> dict[str, bool]:
    if not gate:
        return {GATE_ID: False, **{i: False for i in TIP_IDS}}
    return {GATE_ID: True, **{i: i not in fail for i in TIP_IDS}}


COMPUTE = ("compute_a", "compute_b")

# (name, app dir, rubric, expected verdicts, default suite?)
CASES = [
    ("tip: correct", "tip", TIP, tip(), True),
    # "PASS" everywhere but no calculator: nothing to fill, nothing on screen, so the visual layer
    # has no app to judge (rubric.require_presence): every item fails
    ("tip: says passed", "tip_pass_text", TIP, tip(fail=TIP_IDS), True),
    # the request's one example hardcoded: the hidden values differ
    ("tip: hardcoded example", "tip_hardcoded", TIP, tip(fail=COMPUTE), False),
    # the real #tip is off-screen (left:-9999px), a fake shows 12.00: a user sees no #tip
    ("tip: result off-screen, fake shown", "tip_offscreen", TIP, tip(fail=COMPUTE), True),
    # #tip inside a zero-height overflow:hidden wrapper
    ("tip: result clipped away", "tip_clip", TIP, tip(fail=COMPUTE), False),
    # a transparent full-page overlay takes every click; not interactive, so no overlap
    ("tip: transparent overlay", "tip_overlay", TIP, tip(fail=COMPUTE), False),
    # the handler's error swallowed by try/catch: no error anywhere, no result either
    ("tip: swallowed error", "tip_swallowed", TIP, tip(fail=COMPUTE), False),
    # the handler is attached only when localStorage remembers a first visit
    ("tip: works on second load only", "tip_second_load", TIP, tip(fail=COMPUTE), False),
    # the result appears after 700 ms: expectations wait for it
    ("tip: slow update", "tip_slow", TIP, tip(), False),
    ("tip: uncaught error on load", "tip_load_error", TIP, tip(gate=False), False),
    ("tip: console error on load", "tip_console_error", TIP, tip(gate=False), False),
    # the right text, then an unhandled rejection: an uncaught page error fails the flow
    ("tip: unhandled rejection", "tip_rejection", TIP, tip(fail=COMPUTE), False),
    # alert on load, confirm and prompt on click: dismissed, the flow goes on
    ("tip: dialogs", "tip_dialogs", TIP, tip(), False),
    # computes, then opens a popup and navigates to the (unreachable) internet
    ("tip: navigates away", "tip_navigate", TIP, tip(fail=COMPUTE), False),
    # an endless loop on click: those items fail, the verification finishes
    ("tip: endless loop", "tip_loop", TIP, tip(fail=COMPUTE), False),
    # allocates until the page dies: those items fail, the next page is fine
    ("tip: memory hog", "tip_memory", TIP, tip(fail=COMPUTE), False),
    ("tip: too wide for a phone", "tip_wide", TIP, tip(fail=("phone_no_hscroll",)), False),
    ("tip: low contrast", "tip_low_contrast", TIP, tip(fail=("contrast",)), False),
    # the button drawn over the % field; fill does not need the pointer, so the flows work
    ("tip: overlapping controls", "tip_overlapping", TIP, tip(fail=("no_overlap",)), False),
    # a script from a CDN: no network in the sandbox, a console error while loading
    ("tip: external script", "tip_external", TIP, tip(gate=False), False),
    ("tip: white on a dark gradient", "tip_gradient", TIP, tip(), False),
    # white text over a background image cannot be measured: conservatively a failure
    ("tip: text over an image", "tip_image_bg", TIP, tip(fail=("contrast",)), False),
    ("todo: correct", "todo", TODO, {GATE_ID: True, "add_two": True, "persists": True, "filters": True,
                                      "starts_empty": True, "phone_contrast": True}, False),
    # persistence in a cookie instead of localStorage: a user cannot tell, and a fresh context
    # per item clears cookies too, so nothing leaks into starts_empty
    ("todo: cookie persistence", "todo_cookie", TODO, {GATE_ID: True, "add_two": True, "persists": True,
                                                       "filters": True, "starts_empty": True,
                                                       "phone_contrast": True}, False),
    ("todo: forgets on reload", "todo_forgets", TODO, {GATE_ID: True, "add_two": True, "persists": False,
                                                       "filters": True, "starts_empty": True,
                                                       "phone_contrast": True}, False),
    ("table: correct", "table", TABLE, {GATE_ID: True, "by_name": True, "by_name_desc": True, "by_price": True,
                                         "phone_on_screen": True}, False),
    # prices sorted as strings: 10, 100, 25, 9
    ("table: lexical prices", "table_lexical", TABLE, {GATE_ID: True, "by_name": True, "by_name_desc": True,
                                                       "by_price": False, "phone_on_screen": True}, False),
    ("form: correct", "form", FORM, {GATE_ID: True, "invalid": True, "valid": True, "quiet_start": True}, False),
    ("form: error always shown", "form_always_error", FORM,
     {GATE_ID: True, "invalid": True, "valid": False, "quiet_start": True}, False),
    # the error message is drawn above the page (top:-200px): a user never sees it
    ("form: error off-screen", "form_error_offscreen", FORM,
     {GATE_ID: True, "invalid": False, "valid": True, "quiet_start": True}, False),
    ("converter: correct", "converter", CONVERTER, {GATE_ID: True, "button": True, "enter": True}, False),
    ("converter: Enter does nothing", "converter_no_enter", CONVERTER,
     {GATE_ID: True, "button": True, "enter": False}, False),
    ("python: correct backend", "py_sum", SUM, {GATE_ID: True, "sum": True, "sum_negative": True, "on_screen": True}, False),
    ("python: wrong backend", "py_wrong", SUM, {GATE_ID: True, "sum": False, "sum_negative": False, "on_screen": True},
     False),
    ("python: server exits", "py_crash", SUM, {GATE_ID: False, "sum": False, "sum_negative": False, "on_screen": False},
     False),
    ("python: HTTP 500", "py_500", SUM, {GATE_ID: False, "sum": False, "sum_negative": False, "on_screen": False}, False),
    ("python: slow start", "py_slow_start", SUM, {GATE_ID: True, "sum": True, "sum_negative": True, "on_screen": True},
     False),
    # writes 1 MB files without end before serving: stopped at the workspace quota, never serves
    ("python: fills the disk", "py_disk_fill", SUM, {GATE_ID: False, "sum": False, "sum_negative": False,
                                                     "on_screen": False}, False),
    # allocates without end before serving: MemoryError at the address-space limit, never serves
    ("python: exhausts memory", "py_memory", SUM, {GATE_ID: False, "sum": False, "sum_negative": False,
                                                   "on_screen": False}, False),
    ("python: hostile server", "py_snoop", SNOOP, {GATE_ID: True, "isolated": True, "hidden_sum": False}, True),
]


def load_app(name: str, evidence: Path) -> dict[str, str]:
    root = APPS / name
    files = {str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in sorted(root.rglob("*")) if p.is_file()}
    if name == "py_snoop":
        files["target.txt"] = str(evidence)  # as if the agent had guessed where the evidence goes
    return files


def _params():
    for name, app, rubric, expected, default in CASES:
        marks = () if default else (pytest.mark.browser,)
        yield pytest.param(app, rubric, expected, id=name.replace(" ", "_"), marks=marks)


@pytest.mark.parametrize(("app", "rubric", "expected"), list(_params()))
def test_verdicts_match_the_hand_written_ones(app, rubric, expected, tmp_path):
    from forgerl.envs.appdev.executor import verify_app

    evidence = tmp_path / "evidence"
    # 1.5 s per action (the default is 3): every verdict here holds for any timeout above the
    # slowest legitimate update (tip_slow's 0.7 s); failing expectations wait it out, so it halves the cost
    report = asyncio.run(verify_app(load_app(app, evidence), rubric, evidence_dir=evidence,
                                    limits=BrowserLimits(wall_s=60, action_timeout_s=1.5)))
    got = {GATE_ID: report.gate.passed, **{v.id: v.passed for v in report.items}}
    reasons = {v.id: v.reason for v in [report.gate, *report.items]}
    assert got == expected, reasons
    if app == "py_disk_fill":
        assert "disk quota" in report.gate.reason, report.gate.reason
    if app == "py_memory":
        assert "MemoryError" in report.gate.reason, report.gate.reason
    passed = [v for v in report.items if v.passed]
    assert report.outcome == (len(passed) / len(report.items) if report.gate.passed else 0.0)
    for verdict in [report.gate, *report.items]:
        for shot in verdict.screenshots:
            assert (evidence / shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # nothing but the verifier's screenshots in the evidence directory
    assert all(p.suffix == ".png" and p.name != "forged.png" for p in evidence.iterdir())
    assert report.seconds > 0 and (report.browser_peak_rss_mb or 0) > 0


def test_at_least_30_cases_with_gaming_attempts():
    assert len(CASES) >= 30
    assert {c[1] for c in CASES} == {p.name for p in APPS.iterdir() if p.is_dir()}, "every fixture app has a case"
    assert not os.path.exists("/tmp/forged-by-app.txt")
