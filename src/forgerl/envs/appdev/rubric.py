"""The AppDev contract: what a task's hidden rubric says, and what the verifier answers per item.

An AppDev task is a user request ("build a tip calculator ...") plus a hidden `Rubric`. The
request names the element ids the app must use (a user would say "the bill field", the task says
`#bill`), so that a rubric can be checked by anyone: the deterministic rubric executor
(executor.py, the offline default) and a model that drives the same browser tools through
forgerl's agent loop (model_verifier.py). Both answer with one `ItemVerdict` per rubric item.

Three layers, as in M2's AppDev verifier:
- **execution** (a gate, the same for every task): the app serves its entry page over HTTP, the
  page loads, and no uncaught error or console error is raised while it loads. If the gate fails
  the outcome is 0, whatever the other items say.
- **interaction**: a flow of browser steps (fill, click, select, press, reload ...) ending in
  expectations about what a user would see. Expectations read only elements a user can see
  (visible, not zero-size, inside the page's scrollable area), so text hidden off-screen or an
  element covered by another cannot satisfy them, and actions go through real input events
  (a click needs a visible element that receives the pointer). An uncaught page error during a
  flow fails that item.
- **visual**: measured properties at a viewport (no horizontal scroll, interactive elements
  not overlapping, text contrast at least WCAG AA, nothing rendered off-screen), optionally a
  model judge on screenshots when a vision-capable endpoint is configured.

Outcome = the pass rate over the non-gate items, 0 when the gate fails (`outcome`); visual items
count only when the request's named controls are on screen (`require_presence`).
Hidden values (the numbers a flow types, the results it expects) are drawn from the task's seed
and never appear in the request, so an app must compute them; text saying "passed" earns nothing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Layer = Literal["execution", "interaction", "visual"]

ACTIONS = ("goto", "click", "fill", "select", "check", "uncheck", "press", "reload", "wait_ms")
"""Steps that act like a user. goto: `value` is a path on the app's origin ("/", "/#done");
fill/select: `value` is the text/option value; press: `value` is a key name ("Enter");
wait_ms: `value` is milliseconds (at most 2000)."""

EXPECTATIONS = (
    "expect_text",        # the element's visible text, whitespace-collapsed, equals `value`
    "expect_contains",    # ... contains `value`
    "expect_value",       # an input's current value equals `value`
    "expect_count",       # the number of visible elements matching `selector` equals int(`value`)
    "expect_visible",     # the element is visible and on the page
    "expect_hidden",      # no visible element matches
    "expect_attribute",   # attribute `name` equals `value`
    "expect_order",       # the visible texts of all matches, in DOM order, equal `values`
)

VISUAL_CHECKS = ("no_horizontal_scroll", "no_overlap", "contrast_aa", "on_screen")
"""no_horizontal_scroll: document width <= viewport width; no_overlap: no two visible
interactive elements (input, button, select, textarea, a, [role=button]) intersect by more than
1 CSS pixel; contrast_aa: every visible text node's contrast against its effective background
>= 4.5 (>= 3 for large text); on_screen: every element named in the request (`selectors`) is
visible with its box inside the page (x >= 0, y >= 0, right edge <= document width)."""


class Step(BaseModel):
    """One browser action or expectation in an interaction flow."""

    model_config = ConfigDict(extra="forbid")

    action: str
    selector: str | None = None
    """A CSS selector, normally an id named in the request ("#bill")."""
    value: str | None = None
    values: list[str] | None = None
    """expect_order only."""
    name: str | None = None
    """expect_attribute only: the attribute's name."""

    @model_validator(mode="after")
    def _known(self) -> Step:
        if self.action not in ACTIONS + EXPECTATIONS:
            raise ValueError(f"unknown step action {self.action!r}; known: {', '.join(ACTIONS + EXPECTATIONS)}")
        needs_selector = self.action not in ("goto", "reload", "wait_ms")
        if needs_selector and not self.selector:
            raise ValueError(f"step {self.action!r} needs a selector")
        if self.action == "expect_order" and self.values is None:
            raise ValueError("expect_order needs `values` (the expected texts in order)")
        if self.action == "expect_attribute" and not self.name:
            raise ValueError("expect_attribute needs `name` (the attribute)")
        return self


class Viewport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: int = Field(1280, ge=200, le=4000)
    height: int = Field(800, ge=200, le=4000)


PHONE = Viewport(width=375, height=740)
DESKTOP = Viewport(width=1280, height=800)


class RubricItem(BaseModel):
    """One thing a user would check, in words (`description`, what a model verifier reads) and as
    a machine-checkable spec (`steps` for interaction, `check` for visual)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    layer: Layer
    description: str
    steps: list[Step] = Field(default_factory=list)
    """interaction: run from a fresh page load (with fresh storage unless `keep_storage`)."""
    check: str | None = None
    """visual: one of VISUAL_CHECKS."""
    selectors: list[str] = Field(default_factory=list)
    """visual on_screen: the elements that must be on screen."""
    viewport: Viewport = DESKTOP
    keep_storage: bool = False
    """interaction: keep localStorage from the previous item (persistence checks reload inside
    their own flow instead; this exists for multi-item sessions)."""

    @model_validator(mode="after")
    def _shape(self) -> RubricItem:
        if self.layer == "interaction" and not self.steps:
            raise ValueError(f"interaction item {self.id!r} needs steps")
        if self.layer == "visual" and self.check not in VISUAL_CHECKS:
            raise ValueError(f"visual item {self.id!r} needs check in {VISUAL_CHECKS}, got {self.check!r}")
        return self


class ServerSpec(BaseModel):
    """How the app is served inside the sandbox: `static` = the verifier's own static file server
    over the app's files; `python` = the app's own standard-library server, started as
    `python3 <script> <port>` (the agent wrote it: it runs isolated from the browser driver)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["static", "python"] = "static"
    script: str = "server.py"
    entry: str = "/"
    """The path the execution gate loads ("/" serves index.html)."""


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid")

    server: ServerSpec = Field(default_factory=ServerSpec)
    items: list[RubricItem]

    @model_validator(mode="after")
    def _unique(self) -> Rubric:
        ids = [i.id for i in self.items]
        if len(ids) != len(set(ids)):
            raise ValueError(f"rubric item ids must be unique, got {ids}")
        if any(i.layer == "execution" for i in self.items):
            raise ValueError("the execution gate is built in (GATE_ID); rubric items are interaction or visual")
        return self


GATE_ID = "execution"


class ItemVerdict(BaseModel):
    """The verdict on one rubric item (or the gate), with the evidence a reviewer can check:
    the actions taken, a DOM excerpt (escaped wherever it is shown), console lines, screenshots."""

    model_config = ConfigDict(extra="forbid")

    id: str
    layer: Layer
    passed: bool
    reason: str = ""
    actions: list[str] = Field(default_factory=list)
    dom_excerpt: str = ""
    console: list[str] = Field(default_factory=list)
    screenshots: list[str] = Field(default_factory=list)
    """Paths relative to the verifier's evidence directory."""
    measured: dict[str, Any] = Field(default_factory=dict)


class AppReport(BaseModel):
    """Everything one verification found: the gate, one verdict per rubric item, and its cost."""

    model_config = ConfigDict(extra="forbid")

    gate: ItemVerdict
    items: list[ItemVerdict]
    verifier: str = "rubric-executor"
    """Who judged: "rubric-executor" or "model:<name>"."""
    seconds: float = 0.0
    browser_peak_rss_mb: float | None = None

    @property
    def outcome(self) -> float:
        return outcome(self.gate, self.items)


def require_presence(rubric: Rubric, items: list[ItemVerdict]) -> list[ItemVerdict]:
    """The visual layer judges the app the user asked for, so it counts only when that app is on
    the page: when an `on_screen` item (the request's named controls) fails, every other visual
    item fails too, its measurement kept as evidence. Without this a page saying "Hello" scored
    3 of 7 (no horizontal scroll, contrast and no overlap hold trivially on an empty page). Both
    verifiers apply it to their verdicts (executor.py, rollout/appdev_verifier.py)."""
    presence = {i.id for i in rubric.items if i.layer == "visual" and i.check == "on_screen"}
    missing = [v.id for v in items if v.id in presence and not v.passed]
    if not missing:
        return items
    reason = f"not counted: the app's named controls are not on screen ({', '.join(missing)} failed), so there is no app to judge"
    return [v.model_copy(update={"passed": False, "reason": f"{reason}; measured: {v.reason}"})
            if v.layer == "visual" and v.id not in presence and v.passed else v for v in items]


def outcome(gate: ItemVerdict, items: list[ItemVerdict]) -> float:
    """The reward's outcome: 0 when the gate fails, else the fraction of rubric items passed."""
    if not gate.passed:
        return 0.0
    if not items:
        return 1.0
    return sum(i.passed for i in items) / len(items)
