"""The rubric executor's logic on a scripted fake browser (no Chromium): the gate, each step and
expectation, evidence, page errors, retries, and the time limit."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from forgerl.envs.appdev.executor import describe, run_rubric
from forgerl.envs.appdev.isolation import BrowserLimits
from forgerl.envs.appdev.rubric import GATE_ID, PHONE, Rubric, RubricItem, Step, Viewport, outcome
from forgerl.envs.appdev.session import ActionFailed


class FakeSession:
    """A tiny page model: `texts[selector]` are the visible texts, `values` the inputs; clicking
    `#go` runs `on_click` (a function of the session)."""

    def __init__(self, *, status: int = 200, load_errors: list[str] | None = None, console_errors: list[str] | None = None,
                 on_click=None, hang_on: str | None = None) -> None:
        self.status, self.load_errors, self.console_errors = status, load_errors or [], console_errors or []
        self.on_click, self.hang_on = on_click, hang_on
        self.texts: dict[str, list[str]] = {}
        self.values: dict[str, str] = {}
        self.errors: list[str] = []
        self.log: list[str] = []
        self.opens: list[tuple[str, Viewport | None, bool]] = []
        self.reads = 0

    async def open(self, path: str = "/", *, viewport: Viewport | None = None, fresh_storage: bool = True) -> dict[str, Any]:
        self.opens.append((path, viewport, fresh_storage))
        if fresh_storage:
            self.texts, self.values = {"#out": []}, {}
        self.errors, self.log = list(self.load_errors), [f"error: {e}" for e in self.console_errors]
        return {"status": self.status, "errors": list(self.errors), "console_errors": list(self.log), "title": "t"}

    async def click(self, selector: str) -> None:
        if selector == self.hang_on:
            await asyncio.sleep(3600)
        if selector not in ("#go",):
            raise ActionFailed(f"click {selector}: no such element")
        if self.on_click:
            self.on_click(self)

    async def fill(self, selector: str, text: str) -> None:
        self.values[selector] = text

    async def select(self, selector: str, value: str) -> None:
        self.values[selector] = value

    async def check(self, selector: str, checked: bool = True) -> None:
        self.values[selector] = str(checked)

    async def press(self, selector: str, key: str) -> None:
        self.log.append(f"log: pressed {key}")

    async def reload(self) -> None:
        pass

    async def wait(self, ms: int) -> None:
        pass

    async def visible_texts(self, selector: str) -> list[str]:
        self.reads += 1
        return list(self.texts.get(selector, []))

    async def value(self, selector: str) -> str:
        if selector not in self.values:
            raise ActionFailed(f"no visible element matches {selector}")
        return self.values[selector]

    async def attribute(self, selector: str, name: str) -> str | None:
        return "true" if name == "aria-pressed" else None

    async def dom(self, selector: str = "body", max_chars: int = 4000) -> str:
        return f"<div id='{selector}'>dom</div>"[:max_chars]

    async def measure(self, check: str, selectors: list[str] | None = None) -> dict[str, Any]:
        return {"passed": check != "contrast_aa", "offenders": [] if check != "contrast_aa" else ["p: contrast 2.1 < 4.5"]}

    async def screenshot(self, name: str) -> str:
        return f"{name}.png"

    def console(self) -> list[str]:
        return list(self.log)

    def page_errors(self) -> list[str]:
        return list(self.errors)


LIMITS = BrowserLimits(action_timeout_s=0.3)


def run(session: FakeSession, items: list[RubricItem], wall_s: float = 30):
    return asyncio.run(run_rubric(session, Rubric(items=items), LIMITS, deadline=time.monotonic() + wall_s))


def item(id: str, *steps: Step, **kw) -> RubricItem:  # noqa: A002
    return RubricItem(id=id, layer="interaction", description=id, steps=list(steps), **kw)


def compute(session: FakeSession) -> None:
    session.texts["#out"] = [str(int(session.values.get("#a", "0")) * 2)]


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"status": 404}, "answered HTTP 404"),
    ({"load_errors": ["ReferenceError: x is not defined"]}, "uncaught error while loading: ReferenceError"),
    ({"console_errors": ["boom"]}, "console error while loading: boom"),
])
def test_a_failed_gate_zeroes_the_outcome_and_skips_the_items(kwargs, reason):
    gate, items = run(FakeSession(**kwargs), [item("a", Step(action="expect_hidden", selector="#out"))])
    assert not gate.passed and reason in gate.reason and gate.dom_excerpt
    assert [i.passed for i in items] == [False] and "execution gate failed" in items[0].reason
    assert outcome(gate, items) == 0.0


def test_a_clean_gate_with_evidence():
    gate, _ = run(FakeSession(), [])
    assert gate.id == GATE_ID and gate.passed and gate.actions == ["open /"] and gate.screenshots == ["execution.png"]
    assert gate.measured["status"] == 200


def test_every_expectation_kind_passes_and_fails_on_what_a_user_sees():
    s = FakeSession(on_click=compute)
    flow = [Step(action="fill", selector="#a", value="21"), Step(action="click", selector="#go")]
    items = [
        item("text", *flow, Step(action="expect_text", selector="#out", value="42")),
        item("text_wrong", *flow, Step(action="expect_text", selector="#out", value="43")),
        item("contains", *flow, Step(action="expect_contains", selector="#out", value="4")),
        item("count", *flow, Step(action="expect_count", selector="#out", value="1")),
        item("visible", *flow, Step(action="expect_visible", selector="#out")),
        item("hidden_fails", *flow, Step(action="expect_hidden", selector="#out")),
        item("hidden_before", Step(action="expect_hidden", selector="#out")),
        item("value", *flow, Step(action="expect_value", selector="#a", value="21")),
        item("value_missing", Step(action="expect_value", selector="#b", value="1")),
        item("attribute", Step(action="expect_attribute", selector="#go", name="aria-pressed", value="true")),
        item("order", *flow, Step(action="expect_order", selector="#out", values=["42"])),
        item("order_wrong", *flow, Step(action="expect_order", selector="#out", values=["42", "1"])),
        item("no_element", Step(action="click", selector="#nope")),
    ]
    gate, verdicts = run(s, items)
    got = {v.id: v.passed for v in verdicts}
    assert got == {"text": True, "text_wrong": False, "contains": True, "count": True, "visible": True,
                   "hidden_fails": False, "hidden_before": True, "value": True, "value_missing": False,
                   "attribute": True, "order": True, "order_wrong": False, "no_element": False}
    wrong = next(v for v in verdicts if v.id == "text_wrong")
    assert wrong.reason == "expect_text #out '43': saw '42'"
    assert wrong.actions == ["open /", "fill #a '21'", "click #go", "expect_text #out '43'"]
    assert wrong.dom_excerpt == "<div id='#out'>dom</div>" and wrong.screenshots == ["text_wrong.png"]
    assert next(v for v in verdicts if v.id == "no_element").reason == "click #nope: no such element"
    assert outcome(gate, verdicts) == pytest.approx(8 / 13)


def test_an_uncaught_page_error_during_the_flow_fails_the_item_even_with_the_right_text():
    def compute_then_throw(session):
        compute(session)
        session.errors.append("Error: save failed")

    gate, [v] = run(FakeSession(on_click=compute_then_throw), [item(
        "a", Step(action="fill", selector="#a", value="1"), Step(action="click", selector="#go"),
        Step(action="expect_text", selector="#out", value="2"))])
    assert gate.passed and not v.passed and v.reason == "uncaught page error: Error: save failed"


def test_expectations_wait_for_an_asynchronous_update():
    s = FakeSession()
    original = s.visible_texts

    async def late(selector):
        texts = await original(selector)
        return texts if s.reads < 3 else ["ready"]

    s.visible_texts = late
    _, [v] = run(s, [item("a", Step(action="expect_text", selector="#out", value="ready"))])
    assert v.passed and s.reads >= 3


def test_fresh_storage_per_item_goto_keeps_it_and_the_viewport_is_the_items():
    s = FakeSession()
    run(s, [item("a", Step(action="goto", value="/#done"), Step(action="expect_hidden", selector="#x"), viewport=PHONE),
            item("b", Step(action="reload"), keep_storage=True)])
    assert s.opens[1:] == [("/", PHONE, True), ("/#done", PHONE, False), ("/", Viewport(), False)]


def test_visual_items_report_what_was_measured():
    items = [RubricItem(id=c, layer="visual", description=c, check=c, viewport=PHONE) for c in ("no_overlap", "contrast_aa")]
    _, verdicts = run(FakeSession(), items)
    assert [v.passed for v in verdicts] == [True, False]
    assert verdicts[1].reason == "contrast_aa: fails (p: contrast 2.1 < 4.5)"
    assert verdicts[1].measured["offenders"] and verdicts[1].actions[0] == "open / at 375x740"


def test_the_time_limit_fails_the_hanging_item_and_the_rest_and_still_finishes():
    s = FakeSession(hang_on="#slow")
    start = time.monotonic()
    gate, verdicts = run(s, [item("hangs", Step(action="click", selector="#slow")),
                             item("after", Step(action="expect_hidden", selector="#x"))], wall_s=1.0)
    assert time.monotonic() - start < 5
    assert gate.passed and [v.passed for v in verdicts] == [False, False]
    assert "time limit ran out during this item" in verdicts[0].reason
    assert "time limit was spent" in verdicts[1].reason


def test_describe_is_readable_evidence():
    assert describe(Step(action="expect_attribute", selector="#b", name="aria-pressed", value="true")) == \
        "expect_attribute #b [aria-pressed] 'true'"
    assert describe(Step(action="wait_ms", value="200")) == "wait_ms '200'"
