"""The deterministic rubric executor: the offline default verifier of AppDev apps.

`verify_app(files, rubric)` serves the app and starts one browser (browser.open_app), then:
1. the execution gate: the entry page answers HTTP 200, loads, and raises no uncaught error and
   no console error while loading;
2. each interaction item from a fresh page load with fresh storage: its steps in order (rubric
   ACTIONS as real input events, EXPECTATIONS read from what a user can see, each retried until
   it holds or the action timeout passes, since apps update asynchronously); the first failing
   step or any uncaught page error fails the item;
3. each visual item: a fresh load at the item's viewport, then the measured check.

Every verdict carries its evidence: the actions as written, the DOM excerpt of the element a step
failed on, the console lines, and a screenshot at the end of the item. The executor only drives
the `BrowserSession` protocol, so tests can run it on a fake session (`run_rubric`).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from forgerl.envs.appdev.isolation import BrowserLimits
from forgerl.envs.appdev.rubric import (
    DESKTOP,
    GATE_ID,
    AppReport,
    ItemVerdict,
    Rubric,
    RubricItem,
    Step,
    require_presence,
)
from forgerl.envs.appdev.session import ActionFailed, BrowserSession

__all__ = ["run_gate", "run_rubric", "verify_app"]

_POLL_S = 0.1
_DOM_CHARS = 2000
_SETTLE_MS = 50


async def verify_app(files: dict[str, str], rubric: Rubric, *, evidence_dir: Path | None = None,
                     limits: BrowserLimits | None = None) -> AppReport:
    """Judge the app `files` (relative path -> text) against `rubric`. VerifierError when the
    browser or the sandbox fails (infrastructure); everything the app does wrong is in the report."""
    from forgerl.envs.appdev.browser import open_app  # heavy: Playwright, only when a browser is needed

    limits = limits or BrowserLimits()
    start = time.monotonic()
    async with open_app(files, rubric.server, limits=limits, evidence_dir=evidence_dir) as session:
        gate, items = await run_rubric(session, rubric, limits, deadline=start + limits.wall_s)
        session.watch.sample()
        peak = round(session.watch.peak_mb, 1)
    return AppReport(gate=gate, items=items, seconds=round(time.monotonic() - start, 3), browser_peak_rss_mb=peak)


async def run_rubric(session: BrowserSession, rubric: Rubric, limits: BrowserLimits,
                     deadline: float) -> tuple[ItemVerdict, list[ItemVerdict]]:
    """The gate, then every item while time is left (items not reached fail with that reason)."""
    gate = await _bounded(run_gate(session, rubric), _gate_failed, deadline)
    verdicts = []
    for item in rubric.items:
        if not gate.passed:
            verdicts.append(_not_run(item, "not checked: the execution gate failed"))
            continue
        runner = _interaction(session, rubric, item, limits) if item.layer == "interaction" else _visual(session, rubric, item)
        verdicts.append(await _bounded(runner, lambda why, item=item: _not_run(item, why), deadline))
    return gate, require_presence(rubric, verdicts)


async def _bounded(coro, on_timeout, deadline: float) -> ItemVerdict:
    left = deadline - time.monotonic()
    if left <= 0:
        coro.close()
        return on_timeout("not checked: the verification's time limit was spent")
    try:
        return await asyncio.wait_for(coro, left)
    except TimeoutError:
        return on_timeout("the verification's time limit ran out during this item (the app is too slow or hangs)")


def _not_run(item: RubricItem, reason: str) -> ItemVerdict:
    return ItemVerdict(id=item.id, layer=item.layer, passed=False, reason=reason)


def _gate_failed(reason: str) -> ItemVerdict:
    return ItemVerdict(id=GATE_ID, layer="execution", passed=False, reason=reason)


async def run_gate(session: BrowserSession, rubric: Rubric) -> ItemVerdict:
    """The built-in execution gate (rubric.py), the same for the executor and a model verifier
    (which runs it before the model sees the app): the entry page answers HTTP 200 and loads with
    no uncaught error and no console error."""
    entry = rubric.server.entry
    actions = [f"open {entry}"]
    try:
        info = await session.open(entry, viewport=DESKTOP)
    except ActionFailed as exc:
        note = getattr(session, "server_note", lambda: "")()
        return ItemVerdict(id=GATE_ID, layer="execution", passed=False, actions=actions, console=session.console(),
                           reason=f"the entry page {entry} did not load: {exc}" + (f"; {note}" if note else ""))
    problems = []
    if info.get("status") != 200:
        problems.append(f"{entry} answered HTTP {info.get('status')}, not 200")
    if info.get("errors"):
        problems.append(f"uncaught error while loading: {info['errors'][0]}")
    if info.get("console_errors"):
        problems.append(f"console error while loading: {str(info['console_errors'][0]).removeprefix('error: ')}")
    shot = await session.screenshot(GATE_ID)
    dom = "" if not problems else await _dom(session, "body")
    return ItemVerdict(id=GATE_ID, layer="execution", passed=not problems, reason="; ".join(problems) or "serves and loads cleanly",
                       actions=actions, console=session.console(), screenshots=[shot] if shot else [], dom_excerpt=dom,
                       measured={"status": info.get("status"), "title": info.get("title", "")})


async def _visual(session: BrowserSession, rubric: Rubric, item: RubricItem) -> ItemVerdict:
    vp = item.viewport
    actions = [f"open {rubric.server.entry} at {vp.width}x{vp.height}", f"measure {item.check}"]
    try:
        await session.open(rubric.server.entry, viewport=vp)
        result = await session.measure(item.check or "", item.selectors)
    except ActionFailed as exc:
        return ItemVerdict(id=item.id, layer="visual", passed=False, reason=str(exc), actions=actions,
                           console=session.console())
    shot = await session.screenshot(item.id)
    passed = bool(result.get("passed"))
    offenders = result.get("offenders") or []
    reason = f"{item.check}: " + ("holds" if passed else "fails" + (f" ({'; '.join(map(str, offenders[:3]))})" if offenders else ""))
    return ItemVerdict(id=item.id, layer="visual", passed=passed, reason=reason, actions=actions, console=session.console(),
                       screenshots=[shot] if shot else [], measured=result)


async def _interaction(session: BrowserSession, rubric: Rubric, item: RubricItem, limits: BrowserLimits) -> ItemVerdict:
    actions = [f"open {rubric.server.entry}"]
    console: list[str] = []
    failure, failed_on = "", ""
    try:
        await session.open(rubric.server.entry, viewport=item.viewport, fresh_storage=not item.keep_storage)
        _raise_page_errors(session)
        for step in item.steps:
            actions.append(describe(step))
            failed_on = step.selector or ""
            if step.action == "goto":
                console += session.console()  # open() starts a new log
                await session.open(step.value or "/", viewport=item.viewport, fresh_storage=False)
            else:
                await _step(session, step, limits)
            _raise_page_errors(session)
        await _settle(session)
        _raise_page_errors(session)
    except ActionFailed as exc:
        failure = str(exc)
    console += session.console()
    shot = await session.screenshot(item.id)
    dom = await _dom(session, failed_on or "body") if failure else ""
    return ItemVerdict(id=item.id, layer="interaction", passed=not failure, reason=failure or "every step held",
                       actions=actions, console=console[-50:], screenshots=[shot] if shot else [], dom_excerpt=dom)


def describe(step: Step) -> str:
    """A step as one readable line of evidence ("fill #bill '120'")."""
    parts = [step.action]
    if step.selector:
        parts.append(step.selector)
    if step.name:
        parts.append(f"[{step.name}]")
    if step.values is not None:
        parts.append(repr(step.values))
    elif step.value is not None:
        parts.append(repr(step.value))
    return " ".join(parts)


async def _settle(session: BrowserSession) -> None:
    """Let errors the last action caused arrive before the item is judged: a rejection raised in
    a click handler reaches the driver as an event after the click returns, and a flow whose last
    expectation held at once could otherwise pass under load (seen in CI). A short pause, then a
    round trip to the page (events sent before its answer are delivered first)."""
    await session.wait(_SETTLE_MS)
    await session.dom("body", 1)


def _raise_page_errors(session: BrowserSession) -> None:
    errors = session.page_errors()
    if errors:
        raise ActionFailed(f"uncaught page error: {errors[0]}")


async def _step(session: BrowserSession, step: Step, limits: BrowserLimits) -> None:
    sel, value = step.selector or "", step.value or ""
    match step.action:
        case "click":
            await session.click(sel)
        case "fill":
            await session.fill(sel, value)
        case "select":
            await session.select(sel, value)
        case "check" | "uncheck":
            await session.check(sel, step.action == "check")
        case "press":
            await session.press(sel, value)
        case "reload":
            await session.reload()
        case "wait_ms":
            await session.wait(int(value or 0))
        case _:
            await _expect(session, step, limits.action_timeout_s)


async def _expect(session: BrowserSession, step: Step, timeout_s: float) -> None:
    """Retry the expectation until it holds or `timeout_s` passes; fail with what was seen last."""
    deadline = time.monotonic() + timeout_s
    while True:
        held, seen = await _observe(session, step)
        if held:
            return
        if time.monotonic() >= deadline:
            raise ActionFailed(f"{describe(step)}: saw {seen}")
        await asyncio.sleep(_POLL_S)


async def _observe(session: BrowserSession, step: Step) -> tuple[bool, str]:
    sel, want = step.selector or "", step.value or ""
    if step.action == "expect_value":
        try:
            got = await session.value(sel)
        except ActionFailed as exc:
            return False, str(exc)
        return got == want, repr(got)
    if step.action == "expect_attribute":
        got_attr = await session.attribute(sel, step.name or "")
        return got_attr == want, repr(got_attr)
    texts = await session.visible_texts(sel)
    first = texts[0] if texts else None
    match step.action:
        case "expect_text":
            return first == want, repr(first) if texts else "no visible element"
        case "expect_contains":
            return first is not None and want in first, repr(first) if texts else "no visible element"
        case "expect_count":
            return len(texts) == int(want), f"{len(texts)} visible"
        case "expect_visible":
            return bool(texts), "no visible element" if not texts else "visible"
        case "expect_hidden":
            return not texts, f"{len(texts)} visible"
        case "expect_order":
            return texts == list(step.values or []), repr(texts[:20])
    raise ActionFailed(f"unknown expectation {step.action!r}")


async def _dom(session: BrowserSession, selector: str) -> str:
    try:
        html = await session.dom(selector, _DOM_CHARS)
        return html or await session.dom("body", _DOM_CHARS)
    except ActionFailed:
        return ""
