"""What every AppDev template shares: the template record, rubric and page builders, exact
money arithmetic, and the markers that turn a reference app into its broken variants (see the
package docstring)."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from forgerl.envs.appdev.rubric import DESKTOP, PHONE, Rubric, RubricItem, Step

VARIANTS = ("js_error", "missing_feature", "overflow")
"""The seeded broken variants every template has (see the module docstring)."""

OVERFLOW_CSS = "\nmain { width: 760px; max-width: none; }\n"
UNDEFINED_CALLS = ("refreshView", "updateSummary", "syncState", "renderAll", "recalculate", "logEvent")


# --- small builders -----------------------------------------------------------------------------


def step(action: str, selector: str | None = None, value: str | None = None, **extra: Any) -> Step:
    return Step(action=action, selector=selector, value=value, **extra)


def fill(selector: str, value: str) -> Step:
    return step("fill", selector, value)


def click(selector: str) -> Step:
    return step("click", selector)


def text_is(selector: str, value: str) -> Step:
    return step("expect_text", selector, value)


def order_is(selector: str, values: list[str]) -> Step:
    return step("expect_order", selector, values=list(values))


def flow(item_id: str, description: str, steps: list[Step]) -> RubricItem:
    return RubricItem(id=item_id, layer="interaction", description=description, steps=steps)


def visual_items(selectors: list[str]) -> list[RubricItem]:
    """The four visual items every task has: no horizontal scroll and the named controls on
    screen at a phone width, AA text contrast at a desktop width, no overlapping controls on a phone."""
    return [
        RubricItem(id="phone_no_horizontal_scroll", layer="visual", check="no_horizontal_scroll", viewport=PHONE,
                   description="At a phone width (375 px) the page fits: no horizontal scrolling."),
        RubricItem(id="phone_controls_on_screen", layer="visual", check="on_screen", viewport=PHONE,
                   selectors=list(selectors),
                   description="At a phone width the named controls are visible and inside the page: "
                               + ", ".join(selectors) + "."),
        RubricItem(id="text_contrast", layer="visual", check="contrast_aa", viewport=DESKTOP,
                   description="All visible text has at least WCAG AA contrast against its background."),
        RubricItem(id="phone_no_overlap", layer="visual", check="no_overlap", viewport=PHONE,
                   description="At a phone width no two interactive controls overlap."),
    ]


def money(value: Fraction) -> str:
    """`value` with two decimals, rounded half up (generators never draw a value near a tie)."""
    sign = "-" if value < 0 else ""
    cents = int(abs(value) * 100 + Fraction(1, 2))
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def clear_of_ties(value: Fraction) -> bool:
    """True when `value` in cents is far (>= 0.001 cent) from a rounding tie, so binary floating
    point in the app (toFixed) and exact arithmetic here round the same way."""
    cents = value * 100
    return abs(cents - (cents.numerator // cents.denominator) - Fraction(1, 2)) > Fraction(1, 1000)


def decimal_text(units: int, places: int) -> str:
    """An integer count of 10^-places as decimal text: (1250, 2) -> "12.50"."""
    scale = 10**places
    return f"{units // scale}.{units % scale:0{places}d}"


def js(value: Any) -> str:
    """A JavaScript literal (strings quoted and escaped)."""
    return json.dumps(value)


def subst(text: str, values: dict[str, Any]) -> str:
    """Replace every {{key}} in `text` (app sources use JS braces freely; keys are \\w+)."""

    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template placeholder {{{{{key}}}}} has no value")
        return str(values[key])

    return re.sub(r"\{\{(\w+)\}\}", one, text)


def apply_variant(text: str, variant: str, bug: str) -> str:
    """Turn marked source into the gold app or one broken variant (see the module docstring)."""
    if variant == "js_error":
        text = text.replace("/*HANDLER*/", f"{bug}();")
    text = text.replace("/*HANDLER*/", "")
    feature = re.compile(r"/\*FEATURE\*/(.*?)/\*END\*/", re.S)
    py_feature = re.compile(r"^[ \t]*# FEATURE\n(.*?)^[ \t]*# END\n", re.S | re.M)
    if variant == "missing_feature":
        return py_feature.sub("", feature.sub("", text))
    text = feature.sub(lambda m: m.group(1), text)
    return py_feature.sub(lambda m: m.group(1), text)


BASE_CSS = """* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 16px;
       line-height: 1.45; color: #1f2328; background: #ffffff; }
main { max-width: 640px; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.5rem; margin: 0 0 12px; }
h2 { font-size: 1.2rem; margin: 16px 0 8px; }
label { display: block; margin: 12px 0 4px; font-weight: 600; }
input, select { display: block; width: 100%; padding: 8px; font: inherit; color: #1f2328; background: #ffffff;
                border: 1px solid #57606a; border-radius: 4px; }
input[type=checkbox] { display: inline-block; width: auto; margin: 0 8px 0 0; vertical-align: middle; }
button { margin: 12px 8px 0 0; padding: 8px 14px; font: inherit; color: #ffffff; background: #1d4ed8;
         border: 0; border-radius: 4px; cursor: pointer; }
.out { margin: 8px 0; }
.error { color: #b00020; margin: 4px 0 0; }
.success { color: #116329; margin: 12px 0 0; font-weight: 600; }
.error:empty, .success:empty { display: none; }
ul { padding-left: 0; list-style: none; }
li { padding: 6px 0; border-bottom: 1px solid #d0d7de; }
li.done .title { text-decoration: line-through; color: #57606a; }
table { width: 100%; border-collapse: collapse; margin-top: 12px; }
th, td { text-align: left; padding: 6px 4px; border-bottom: 1px solid #d0d7de; }
th button { margin: 0; padding: 4px 8px; }
nav a { display: inline-block; margin: 0 8px 8px 0; padding: 6px 12px; color: #1d4ed8; border: 1px solid #1d4ed8;
        border-radius: 4px; text-decoration: none; }
nav a.active { color: #ffffff; background: #1d4ed8; }
"""


def page(title: str, body: str, *, script: str = "", css: str = BASE_CSS, scripts: tuple[str, ...] = (),
         stylesheet: str | None = None) -> str:
    """A whole HTML page: inline CSS and script, or links to separate files."""
    style = f'<link rel="stylesheet" href="{stylesheet}">' if stylesheet else f"<style>\n{css}</style>"
    tags = "".join(f'\n<script src="{s}"></script>' for s in scripts)
    inline = f"\n<script>\n{script}</script>" if script else ""
    return (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{title}</title>\n'
            f'<link rel="icon" href="data:,">\n{style}\n</head>\n<body>\n<main>\n{body}\n</main>{tags}{inline}\n'
            "</body>\n</html>\n")


def pick_ids(rng: random.Random, pools: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """One id per role from its pool (pools are disjoint, so ids never collide)."""
    return {role: rng.choice(pool) for role, pool in pools.items()}


CLOSINGS = (
    "Build it as plain HTML, CSS and JavaScript with index.html as the entry page (other files next to it are "
    "fine). Nothing may be loaded from the network: no CDNs or external libraries. It must work on a phone "
    "(375 px wide) without horizontal scrolling, with readable text contrast and no overlapping controls.",
    "Use plain HTML, CSS and JavaScript only, starting from index.html (you may add more files beside it), and "
    "nothing from the network (no CDNs, no libraries). On a phone screen 375 px wide it must fit without "
    "sideways scrolling; keep the text readable against its background and the controls from overlapping.",
    "Keep it to plain HTML/CSS/JS with index.html as the page that opens; it has to work offline, so no external "
    "scripts, fonts or libraries. It should look right on a 375 px wide phone: no horizontal scrolling, text "
    "with good contrast, controls that do not overlap.",
)
"""How a static request ends (`closing(params)` picks one per task): the stack and the visual bar."""


def closing(params: dict[str, Any]) -> str:
    return CLOSINGS[params.get("closing", 0) % len(CLOSINGS)]


INTROS = ("I need {what}.", "Please build {what}.", "Could you make {what}?", "Build me {what}.",
          "I would like {what}.", "Can you put together {what}?")


# --- the template protocol ----------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """One kind of app. `draw` picks the params from a seeded rng; the rest are pure functions of them."""

    name: str
    difficulty: int
    draw: Callable[[random.Random], dict[str, Any]]
    request: Callable[[dict[str, Any]], str]
    rubric: Callable[[dict[str, Any]], Rubric]
    files: Callable[[dict[str, Any], str], dict[str, str]]
    """files(params, variant): variant is "gold" or one of VARIANTS."""
    hidden: Callable[[dict[str, Any]], list[str]]
    """The seed-drawn values the request must not contain (typed values, expected results)."""


