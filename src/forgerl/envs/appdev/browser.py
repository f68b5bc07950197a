"""The real `BrowserSession`: headless Chromium driven by Playwright, on an app served in a sandbox.

```python
async with open_app(files, rubric.server, limits=BrowserLimits(), evidence_dir=out) as session:
    info = await session.open("/")
    await session.fill("#bill", "120")
    texts = await session.visible_texts("#tip")
```

Isolation is isolation.py's (two bubblewrap sandboxes, loopback only, a trusted relay between
them); this module is the driver. One Chromium per `open_app`, one browser context per `open`
with fresh storage, so items cannot see each other's localStorage or cookies but share the cost
of starting a browser.

Whose fault: Chromium failing to start, crashing or disconnecting, and the sandbox failing, raise
`VerifierError` (infrastructure: such an episode is kept out of the loss, never scored 0). The
app's faults (an element missing, covered or off-screen, a page that hangs, crashes or runs out
of memory) raise `ActionFailed` or show up in what the calls return. Dialogs (alert, confirm,
prompt) are dismissed by Playwright, so they never block a flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from forgerl.envs.appdev import isolation
from forgerl.envs.appdev.isolation import BrowserLimits
from forgerl.envs.appdev.rubric import VISUAL_CHECKS, ServerSpec, Viewport
from forgerl.envs.appdev.session import ActionFailed
from forgerl.envs.appdev.visual import measure_script, visible_texts_script, visible_value_script
from forgerl.errors import VerifierError

__all__ = ["BrowserLimits", "ChromiumSession", "open_app"]

_MAX_LOG_LINES = 200
_MAX_LINE = 500
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_RESET_PATH = "/__forgerl_reset__"
_CLEAR_JS = "() => { localStorage.clear(); sessionStorage.clear(); window.name = ''; }"


def _short(exc: BaseException) -> str:
    """Playwright's first line (its call logs are long and name host paths)."""
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


class ChromiumSession:
    """One browser on one served app; `open` starts a fresh page (see session.BrowserSession)."""

    def __init__(self, browser: Any, origin: str, limits: BrowserLimits, evidence_dir: Path | None,
                 watch: isolation.MemoryWatch) -> None:
        self._browser, self.origin, self.limits = browser, origin, limits
        self.evidence_dir = evidence_dir
        self.watch = watch
        self._context: Any = None
        self._page: Any = None
        self._cdp: Any = None
        self._console: list[str] = []
        self._errors: list[str] = []
        self._crashed = ""
        self._shots = 0
        self.server_note: Any = lambda: ""
        """Why the app server is not answering, if it is not (set by open_app; the gate reports it)."""

    # -- pages -------------------------------------------------------------------------------

    async def open(self, path: str = "/", *, viewport: Viewport | None = None, fresh_storage: bool = True) -> dict[str, Any]:
        self._alive()
        viewport = viewport or Viewport()
        size = {"width": viewport.width, "height": viewport.height}
        if not await self._reuse_page(size, fresh_storage):
            await self._new_page(size, fresh_storage)
        self._console, self._errors = [], []
        status = await self._goto(path)
        return {"status": status, "url": self._page.url, "title": await self._safe_title(),
                "errors": list(self._errors), "console_errors": [c for c in self._console if c.startswith("error:")]}

    async def _reuse_page(self, size: dict[str, int], fresh_storage: bool) -> bool:
        """Reuse a healthy page for the next load (a new page spawns a renderer: ~0.5 s each on a
        small machine). With fresh storage, it first goes to a blank page on the app's origin that
        the browser answers itself (`_RESET_PATH`: the app's code never runs there; the old
        document's unload handlers have run by then) and clears local and session storage and
        window.name there, then the origin's IndexedDB, caches and cookies through CDP. A crashed
        or hung page is never reused."""
        page = self._page
        if page is None or self._crashed or page.is_closed():
            return False
        timeout = self.limits.action_timeout_s
        try:
            for extra in self._context.pages:
                if extra is not page:  # popups the app opened
                    await asyncio.wait_for(extra.close(), timeout)
            if fresh_storage:
                await page.goto(self.origin + _RESET_PATH, timeout=timeout * 1000)
                await asyncio.wait_for(page.evaluate(_CLEAR_JS), timeout)
                await self._cdp.send("Storage.clearDataForOrigin", {"origin": self.origin, "storageTypes": "all"})
                await self._context.clear_cookies()
            await page.set_viewport_size(size)
        except Exception:  # noqa: BLE001 — start over with a new context instead
            return False
        return True

    async def _new_page(self, size: dict[str, int], fresh_storage: bool) -> None:
        if self._page is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._page.close(), self.limits.action_timeout_s)
            self._page = None
        if fresh_storage or self._context is None or self._crashed:
            await self._close_context()
            try:
                self._context = await self._browser.new_context(viewport=size, service_workers="block")
            except Exception as exc:  # noqa: BLE001 — the browser is gone
                raise VerifierError(f"Chromium could not open a browser context: {_short(exc)}") from exc
            self._context.set_default_timeout(self.limits.action_timeout_s * 1000)
            self._context.set_default_navigation_timeout(self.limits.load_timeout_s * 1000)
        try:
            page = await self._context.new_page()
            await page.set_viewport_size(size)
            self._cdp = await self._context.new_cdp_session(page)
        except Exception as exc:  # noqa: BLE001
            self._alive()
            raise VerifierError(f"Chromium could not open a page: {_short(exc)}") from exc
        self._page, self._crashed = page, ""
        page.on("console", self._on_console)
        page.on("pageerror", self._on_error)
        page.on("crash", self._on_crash)
        await page.route(self.origin + _RESET_PATH, _fulfill_blank)

    async def _goto(self, path: str) -> int | None:
        if not path.startswith("/"):
            raise ActionFailed(f"goto needs a path on the app's origin starting with '/', got {path!r}")
        try:
            response = await self._page.goto(self.origin + path, wait_until="load")
        except Exception as exc:  # noqa: BLE001 — a hung or crashed page is the app's fault
            self._alive()
            await self._check_responsive()
            raise ActionFailed(f"loading {path} failed: {self._crash_note() or _short(exc)}") from exc
        return response.status if response is not None else None

    async def _safe_title(self) -> str:
        try:
            return str(await asyncio.wait_for(self._page.title(), self.limits.action_timeout_s))[:200]
        except Exception:  # noqa: BLE001
            return ""

    async def goto(self, path: str) -> int | None:
        """Navigate the current page (a rubric `goto` step), keeping storage."""
        self._need_page()
        return await self._goto(path)

    async def reload(self) -> None:
        self._need_page()
        try:
            await self._page.reload(wait_until="load")
        except Exception as exc:  # noqa: BLE001
            self._alive()
            raise ActionFailed(f"reload failed: {self._crash_note() or _short(exc)}") from exc

    async def wait(self, ms: int) -> None:
        await asyncio.sleep(max(0, min(int(ms), 2000)) / 1000)

    # -- actions: real input events with Playwright's actionability checks --------------------

    async def _act(self, what: str, selector: str, call) -> None:
        self._need_page()
        try:
            await call(self._page.locator(selector).first)
        except Exception as exc:  # noqa: BLE001
            self._alive()
            await self._check_responsive()
            raise ActionFailed(f"{what} {selector}: {self._crash_note() or _short(exc)}") from exc

    async def _check_responsive(self) -> None:
        """After a failed action: a page whose script never yields (an endless loop) is marked
        hung, so later reads fail at once instead of each waiting out its timeout."""
        if self._crashed:
            return
        try:
            await asyncio.wait_for(self._page.evaluate("1"), 1.0)
        except TimeoutError:
            self._crashed = "the page stopped responding (a script that never yields?)"
        except Exception:  # noqa: BLE001 — navigating, closed: not hung
            pass

    async def click(self, selector: str) -> None:
        await self._act("click", selector, lambda loc: loc.click())

    async def fill(self, selector: str, text: str) -> None:
        await self._act("fill", selector, lambda loc: loc.fill(text))

    async def select(self, selector: str, value: str) -> None:
        await self._act("select", selector, lambda loc: loc.select_option(value))

    async def check(self, selector: str, checked: bool = True) -> None:
        await self._act("check" if checked else "uncheck", selector, lambda loc: loc.set_checked(checked))

    async def press(self, selector: str, key: str) -> None:
        await self._act("press", selector, lambda loc: loc.press(key))

    # -- observations ------------------------------------------------------------------------

    async def _eval(self, what: str, script: str, arg: Any) -> Any:
        self._need_page()
        if self._crashed:
            raise ActionFailed(f"{what}: {self._crashed}")
        try:
            return await asyncio.wait_for(self._page.evaluate(script, arg), self.limits.action_timeout_s)
        except TimeoutError as exc:
            self._crashed = "the page stopped responding (a script that never yields?)"
            raise ActionFailed(f"{what}: the page did not answer within {self.limits.action_timeout_s:g} s "
                               "(a busy script?)") from exc
        except Exception as exc:  # noqa: BLE001
            self._alive()
            raise ActionFailed(f"{what}: {self._crash_note() or _short(exc)}") from exc

    async def visible_texts(self, selector: str) -> list[str]:
        texts = await self._eval(f"reading {selector}", visible_texts_script(), selector)
        return [str(t)[:2000] for t in texts]

    async def value(self, selector: str) -> str:
        found = await self._eval(f"reading the value of {selector}", visible_value_script(), selector)
        if found is None:
            raise ActionFailed(f"no visible element matches {selector}")
        return str(found["value"])[:2000]

    async def attribute(self, selector: str, name: str) -> str | None:
        script = "([s, n]) => { const e = document.querySelector(s); return e ? e.getAttribute(n) : null; }"
        value = await self._eval(f"reading {name} of {selector}", script, [selector, name])
        return None if value is None else str(value)[:2000]

    async def dom(self, selector: str = "body", max_chars: int = 4000) -> str:
        script = "(s) => { const e = document.querySelector(s); return e ? e.outerHTML : null; }"
        html = await self._eval(f"reading the DOM of {selector}", script, selector)
        return "" if html is None else str(html)[:max_chars]

    async def measure(self, check: str, selectors: list[str] | None = None) -> dict[str, Any]:
        if check not in VISUAL_CHECKS:
            raise ActionFailed(f"unknown visual check {check!r}; known: {', '.join(VISUAL_CHECKS)}")
        result = await self._eval(f"measuring {check}", measure_script(check), list(selectors or []))
        if not isinstance(result, dict) or "passed" not in result:
            raise VerifierError(f"the {check} measurement returned {result!r}")
        return result

    async def screenshot(self, name: str) -> str:
        """PNG of the viewport into the evidence directory; "" when there is none or the page
        cannot be drawn (a hung or crashed page: the item already fails for that)."""
        if self.evidence_dir is None or self._page is None or self._crashed:
            return ""
        self._shots += 1
        rel = f"{self._shots:03d}-{_SAFE_NAME.sub('_', name)[:60]}.png"
        try:
            await asyncio.wait_for(self._page.screenshot(path=str(self.evidence_dir / rel), timeout=self.limits.action_timeout_s * 1000),
                                   self.limits.action_timeout_s + 1)
        except Exception:  # noqa: BLE001
            self._alive()
            return ""
        return rel

    def console(self) -> list[str]:
        return list(self._console)

    def page_errors(self) -> list[str]:
        return list(self._errors)

    # -- events and health -------------------------------------------------------------------

    def _log(self, line: str) -> None:
        if len(self._console) < _MAX_LOG_LINES:
            self._console.append(line[:_MAX_LINE])

    def _on_console(self, msg: Any) -> None:
        where = str((msg.location or {}).get("url", ""))
        if msg.type == "error" and where.split("?")[0].endswith("/favicon.ico"):
            return  # Chromium asks for it by itself; an app without one has no fault
        self._log(f"{msg.type}: {msg.text}")

    def _on_error(self, exc: Any) -> None:
        text = str(getattr(exc, "message", "") or exc)
        if len(self._errors) < _MAX_LOG_LINES:
            self._errors.append(text[:_MAX_LINE])
        self._log(f"pageerror: {text}")

    def _on_crash(self, _page: Any) -> None:
        self._crashed = "the page crashed" + (f" ({self.watch.kills[-1]})" if self.watch.kills else "")
        self._log(f"crash: {self._crashed}")

    def _crash_note(self) -> str:
        return self._crashed

    def _need_page(self) -> None:
        self._alive()
        if self._page is None:
            raise ActionFailed("no page is open: call open() first")

    def _alive(self) -> None:
        if not self._browser.is_connected():
            raise VerifierError("Chromium disconnected (crashed or was killed)")

    async def _close_context(self) -> None:
        if self._context is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._context.close(), 5)
            self._context, self._page = None, None


def _server_note(app: isolation.AppServer, ready: bool, limits: BrowserLimits) -> str:
    notes = []
    if not ready:
        notes.append(f"the app server did not answer on port {isolation.PORT} within {limits.start_timeout_s:g} s "
                     f"(exit code {app.exited}); its output ends: {app.log(800)!r}")
    if app.over_quota:
        notes.append(f"the app server was stopped: {app.over_quota}")
    return "; ".join(notes)


async def _fulfill_blank(route: Any) -> None:
    await route.fulfill(status=200, content_type="text/html", body="<!doctype html><title>reset</title>")


@contextlib.asynccontextmanager
async def open_app(files: dict[str, str], server: ServerSpec | None = None, *, limits: BrowserLimits | None = None,
                   evidence_dir: Path | None = None) -> AsyncIterator[ChromiumSession]:
    """Serve `files` in a sandbox, start Chromium in another, and yield a session on the app.
    VerifierError when Chromium or the sandbox cannot start; an app server that never answers is
    the app's fault: the session still opens and `open` reports the failed load."""
    server = server or ServerSpec()
    limits = limits or BrowserLimits()
    chrome = isolation.require_isolation()
    try:
        from playwright.async_api import async_playwright  # heavy: the browser driver, only for AppDev
    except ImportError as exc:
        raise VerifierError("the AppDev verifier needs Playwright: pip install 'forgerl[appdev]'") from exc
    if evidence_dir is not None:
        evidence_dir = Path(evidence_dir)
        evidence_dir.mkdir(parents=True, exist_ok=True)
    root = isolation.new_root()
    app: isolation.AppServer | None = None
    uid: int | None = None
    ready_task: asyncio.Task | None = None
    try:
        app = await isolation.start_app(files, server, root, limits)
        ready_task = asyncio.create_task(app.wait_ready(limits.start_timeout_s))  # while Chromium starts
        wrapper, uid = isolation.browser_wrapper(root, chrome, app.bridge, limits)
        watch = isolation.MemoryWatch(root / "browser.pid", limits.memory_mb)
        async with async_playwright() as pw:
            try:
                # V8's own heap cap makes a page that allocates without end crash early and cheaply;
                # MemoryWatch bounds the rest (DOM, images, many pages)
                heap = f"--js-flags=--max-old-space-size={max(64, limits.memory_mb // 3)}"
                browser = await pw.chromium.launch(executable_path=str(wrapper), headless=True, args=[heap],
                                                   timeout=limits.start_timeout_s * 1000)
            except Exception as exc:  # noqa: BLE001
                raise VerifierError(f"Chromium did not start in its sandbox: {_short(exc)}") from exc
            watcher = asyncio.create_task(watch.run())
            session = ChromiumSession(browser, f"http://127.0.0.1:{isolation.PORT}", limits, evidence_dir, watch)
            try:
                ready = await ready_task
                if not ready and server.kind == "static":  # the verifier's own server: never the app's fault
                    raise VerifierError(f"the static file server did not start in the app's sandbox: {app.log(800)!r}")
                session.server_note = lambda: _server_note(app, ready, limits)
                yield session
            finally:
                watcher.cancel()
                with contextlib.suppress(BaseException):
                    await watcher
                await session._close_context()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(browser.close(), 10)
    finally:
        if ready_task is not None and not ready_task.done():
            ready_task.cancel()
            with contextlib.suppress(BaseException):
                await ready_task
        if app is not None:
            await app.close()
        await asyncio.to_thread(isolation.sweep_uid, uid)
        isolation.remove_root(root)
