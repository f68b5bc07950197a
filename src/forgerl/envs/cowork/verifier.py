"""Artifact-aligned acceptance for cowork tasks (M2_NOTES §5): judge what the agent left behind.

The verifier never reads the agent's prose about what it did. It recomputes the final sheet from its
raw cells and compares target cells by value (so `=1200+345.5` and `1545.5` are equally right), checks
that the cells it was not asked to touch still hold what they held (formulas included: overwriting a
formula with its current number would break the sheet for the next invoice), and reads the replies
and notes for the facts they must state. Facts are matched tolerantly of formatting: numbers by value
("1,234.50", "$1234.5" and "1234.50 USD" all match 1234.5, to the cent), dates in ISO or month-name
forms, times in 24 h or am/pm, names case- and whitespace-insensitively.

Score rule: all-or-nothing. The score is 1.0 when every check passes, else 0.0: a budget with the
right number but a reply with the wrong balance is not a finished job. The breakdown still gives the
fraction of checks passed per component (`sheet`, `reply`, `note`) and overall (`checks_passed`), so
partial progress is visible for analysis and reward shaping; `evidence["checks"]` lists every check
with what was expected and what was found.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from forgerl.envs.cowork.formula import FormulaError, Sheet
from forgerl.envs.cowork.workplace import WorkplaceState

MONEY_TOLERANCE = 0.005  # half a cent
_NUMBER_RE = re.compile(r"(?<![\w.])(-)?\s?[$€£]?\s?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)")
_MONTHS = (
    "january february march april may june july august september october november december".split()
)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Fact(_Spec):
    """Something a reply or note must state. `label` says what it is, for the evidence."""

    kind: Literal["number", "text", "date", "time"]
    value: float | str
    label: str


class CellCheck(_Spec):
    cell: str
    expected: float
    label: str


class MessageCheck(_Spec):
    """Facts a reply (to mail `target`) or a note (titled `target`) must contain."""

    target: str
    facts: list[Fact]


class VerifierSpec(_Spec):
    """What a finished task looks like; generated with the task and stored as `Task.verifier`."""

    type: Literal["cowork_artifacts"] = "cowork_artifacts"
    cells: list[CellCheck] = Field(default_factory=list)
    unchanged: dict[str, float | str] = Field(default_factory=dict)  # cell -> raw content to keep
    replies: list[MessageCheck] = Field(default_factory=list)
    notes: list[MessageCheck] = Field(default_factory=list)


class CheckResult(_Spec):
    component: Literal["sheet", "reply", "note"]
    name: str
    expected: Any
    found: Any
    passed: bool


# --- tolerant fact matching ---------------------------------------------------------------------


def numbers_in(text: str) -> list[float]:
    """Every number written in `text`, thousands separators and currency signs removed."""
    found = []
    for match in _NUMBER_RE.finditer(text):
        value = float(match.group(2).replace(",", ""))
        found.append(-value if match.group(1) else value)
    return found


def _normalize_text(text: str) -> str:
    return " ".join(text.casefold().split())


def date_spellings(iso: str) -> list[re.Pattern[str]]:
    """Ways to write an ISO date: 2025-03-14, March 14(th), Mar 14, 14 March, 14/03/2025, 3/14/2025."""
    year, month, day = (int(part) for part in iso.split("-"))
    name = _MONTHS[month - 1]
    month_words = f"(?:{name}|{name[:3]}\\.?)"
    ordinal = r"(?:st|nd|rd|th)?"
    return [
        re.compile(rf"\b{year}-0?{month}-0?{day}\b"),
        re.compile(rf"\b{month_words}\s+0?{day}{ordinal}\b", re.IGNORECASE),
        re.compile(rf"\b0?{day}{ordinal}\s+(?:of\s+)?{month_words}(?![a-z])", re.IGNORECASE),
        re.compile(rf"\b0?{day}[./]0?{month}[./]{year}\b"),
        re.compile(rf"\b0?{month}/0?{day}/{year}\b"),
    ]


def time_spellings(hhmm: str) -> list[re.Pattern[str]]:
    """Ways to write a time: 14:30, 14.30, 2:30 pm, 2:30pm, 2.30 p.m., and 2 pm for whole hours."""
    hour, minute = (int(part) for part in hhmm.split(":"))
    half_day = "a" if hour < 12 else "p"
    hour12 = hour % 12 or 12
    suffix = rf"\s?{half_day}\.?m\.?"
    patterns = [
        re.compile(rf"(?<!\d)0?{hour}[:.h]{minute:02d}(?!\d)"),
        re.compile(rf"(?<!\d){hour12}[:.]{minute:02d}{suffix}", re.IGNORECASE),
    ]
    if minute == 0:
        patterns.append(re.compile(rf"(?<!\d){hour12}{suffix}", re.IGNORECASE))
    return patterns


def fact_found(fact: Fact, text: str) -> bool:
    if fact.kind == "number":
        return any(math.isclose(n, float(fact.value), abs_tol=MONEY_TOLERANCE) for n in numbers_in(text))
    if fact.kind == "text":
        return _normalize_text(str(fact.value)) in _normalize_text(text)
    patterns = date_spellings(str(fact.value)) if fact.kind == "date" else time_spellings(str(fact.value))
    return any(p.search(text) for p in patterns)


# --- the checks ---------------------------------------------------------------------------------


def _same_raw(before: float | str, after: float | str | None) -> bool:
    if isinstance(before, str) and isinstance(after, str):
        if before.startswith("="):
            return before.replace(" ", "").upper() == after.replace(" ", "").upper()
        return before == after
    if isinstance(before, float | int) and isinstance(after, float | int):
        return math.isclose(float(before), float(after), abs_tol=1e-9)
    return False


def check_sheet(spec: VerifierSpec, state: WorkplaceState) -> list[CheckResult]:
    """Recompute the final sheet from its raw cells, then compare targets and untouched cells."""
    sheet = Sheet(state.cells)
    try:
        values: dict[str, Any] = sheet.evaluate_all()
        error = None
    except FormulaError as exc:  # a state built outside the tools may be broken: data, not a crash
        values, error = {}, str(exc)
    results = []
    for check in spec.cells:
        value = values.get(check.cell)
        passed = isinstance(value, float) and math.isclose(value, check.expected, abs_tol=MONEY_TOLERANCE)
        found = error if error else value
        results.append(CheckResult(component="sheet", name=f"{check.cell}: {check.label}", expected=check.expected, found=found, passed=passed))
    if spec.unchanged:
        changed = {
            ref: {"before": before, "after": state.cells.get(ref)}
            for ref, before in spec.unchanged.items()
            if not _same_raw(before, state.cells.get(ref))
        }
        results.append(
            CheckResult(
                component="sheet",
                name="cells outside the task keep their contents",
                expected=f"{len(spec.unchanged)} cells unchanged",
                found=changed or "unchanged",
                passed=not changed,
            )
        )
    return results


def _check_facts(component: Literal["reply", "note"], where: str, text: str | None, facts: list[Fact]) -> list[CheckResult]:
    results = []
    for fact in facts:
        passed = text is not None and fact_found(fact, text)
        if text is None:
            found: Any = f"no {component} {where}"
        elif fact.kind == "number":
            found = numbers_in(text)
        else:
            found = text[:300]
        results.append(CheckResult(component=component, name=f"{component} {where} states {fact.label}", expected=fact.value, found=found, passed=passed))
    return results


def check_replies(spec: VerifierSpec, state: WorkplaceState) -> list[CheckResult]:
    """The *last* reply to each target mail must state its facts (a later reply supersedes, so
    spraying many numbers over several replies does not help)."""
    results = []
    for check in spec.replies:
        replies = [r for r in state.replies if r.in_reply_to == check.target]
        text = replies[-1].body if replies else None
        results.extend(_check_facts("reply", f"to {check.target}", text, check.facts))
    return results


def check_notes(spec: VerifierSpec, state: WorkplaceState) -> list[CheckResult]:
    results = []
    for check in spec.notes:
        wanted = _normalize_text(check.target)
        text = next((body for title, body in state.notes.items() if _normalize_text(title) == wanted), None)
        results.extend(_check_facts("note", f"titled {check.target!r}", text, check.facts))
    return results


def verify(spec: VerifierSpec, state: WorkplaceState) -> tuple[float, dict[str, float], list[CheckResult]]:
    """Score a final workplace: (score, per-component pass fractions, every check)."""
    checks = [*check_sheet(spec, state), *check_replies(spec, state), *check_notes(spec, state)]
    breakdown: dict[str, float] = {}
    for component in ("sheet", "reply", "note"):
        mine = [c for c in checks if c.component == component]
        if mine:
            breakdown[component] = sum(c.passed for c in mine) / len(mine)
    all_passed = bool(checks) and all(c.passed for c in checks)
    breakdown["checks_passed"] = sum(c.passed for c in checks) / len(checks) if checks else 0.0
    breakdown["all_passed"] = float(all_passed)
    return (1.0 if all_passed else 0.0), breakdown, checks
