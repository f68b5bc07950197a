"""The browser tools, as one interface shared by the rubric executor and a model verifier.

`BrowserSession` is what both verifiers drive: the deterministic executor (executor.py) calls it
step by step from a rubric; a model verifier (model_verifier.py) exposes the same calls as tools
in forgerl's agent loop. The real implementation (browser.py) runs headless Chromium and the app
inside the sandbox's isolation; tests may use a fake with the same methods.

Every method returns plain data (strings, dicts) the host decides on; nothing the app controls is
trusted beyond being an observation. Text taken from the page is untrusted: callers clip it and
escape it wherever it is shown.
"""

from __future__ import annotations

from typing import Any, Protocol

from forgerl.envs.appdev.rubric import Viewport


class ActionFailed(Exception):
    """A user action could not be done (no such element, not visible, covered, timed out): the
    app's fault, so the item fails with this message as its reason. Not an infrastructure error."""


class BrowserSession(Protocol):
    """One browser page on one served app. Infrastructure failures (Chromium crashed, the sandbox
    could not start) raise forgerl.errors.VerifierError; the app's faults raise ActionFailed or
    show up in the returned data."""

    async def open(self, path: str = "/", *, viewport: Viewport | None = None, fresh_storage: bool = True) -> dict[str, Any]:
        """Load `path` on the app's origin. Returns {"status": HTTP status or None, "url": ...,
        "title": ..., "errors": [uncaught page errors during load], "console_errors": [...]}."""
        ...

    async def click(self, selector: str) -> None: ...

    async def fill(self, selector: str, text: str) -> None: ...

    async def select(self, selector: str, value: str) -> None: ...

    async def check(self, selector: str, checked: bool = True) -> None: ...

    async def press(self, selector: str, key: str) -> None: ...

    async def reload(self) -> None: ...

    async def wait(self, ms: int) -> None: ...

    async def visible_texts(self, selector: str) -> list[str]:
        """The whitespace-collapsed innerText of every *visible, on-page* element matching
        `selector`, in DOM order (see rubric.py for what counts as visible)."""
        ...

    async def value(self, selector: str) -> str:
        """The current value of the (visible) form control matching `selector`."""
        ...

    async def attribute(self, selector: str, name: str) -> str | None: ...

    async def dom(self, selector: str = "body", max_chars: int = 4000) -> str:
        """The outerHTML of the first match, clipped to `max_chars` (raw: escape before showing)."""
        ...

    async def measure(self, check: str, selectors: list[str] | None = None) -> dict[str, Any]:
        """Run one visual check (rubric.VISUAL_CHECKS) at the current viewport; returns
        {"passed": bool, ...the measured numbers and offending elements}."""
        ...

    async def screenshot(self, name: str) -> str:
        """Save a PNG of the viewport in the evidence directory; returns its relative path."""
        ...

    def console(self) -> list[str]:
        """Console messages and uncaught page errors since the last `open`, as "level: text"."""
        ...

    def page_errors(self) -> list[str]:
        """Uncaught page errors (exceptions, unhandled rejections) since the last `open`."""
        ...
