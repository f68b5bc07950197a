"""Issue text written from the failing behaviour of a mutant, the way a user would report it.

The writer sees only what a user could see: the call that misbehaves (taken from the failing test),
what came back (or what was raised) and what was expected. It never sees the mutation, so the issue
cannot leak the diff. Wording varies with a seeded rng so a policy cannot key on one template.
"""

from __future__ import annotations

import random

from forgerl.envs.swe.verify import CaseResult, suite_header

MAX_EXAMPLES = 2

_TITLES = (
    "`{func}` returns the wrong result",
    "Unexpected behaviour in `{module}.{func}`",
    "Bug: `{func}` does not do what its documentation says",
    "`{func}` misbehaves for some inputs",
)
_OPENINGS = (
    "I ran into a problem with `{func}` from `{module}`.",
    "`{module}.{func}` gives a result I did not expect.",
    "While using `{func}` I noticed the following.",
)
_CLOSINGS = (
    "Could you take a look?",
    "Is this a regression?",
    "Thanks!",
    "",
)


def _code(text: str) -> str:
    return f"```python\n{text.strip()}\n```"


def describe_failure(result: CaseResult) -> str | None:
    """One paragraph about one failing test, or None when the failure carries too little detail."""
    d = result.detail
    call = (d.get("call") or "").strip()
    if call and (d.get("setup") or "").strip():
        call = d["setup"].strip() + "\n" + call
    exc = d.get("exception", "")
    if "expected" in d and "actual" in d and call:
        return f"{_code(call)}\nreturns `{d['actual']}`, but I expected `{d['expected']}`."
    if "expected" in d and "actual_raises" in d and call:
        return f"{_code(call)}\nraises `{d['actual_raises']}` instead of returning `{d['expected']}`."
    if exc.startswith("Failed: DID NOT RAISE") and call:
        wanted = exc.removeprefix("Failed: DID NOT RAISE").strip().strip("<>").replace("class ", "").strip("'")
        return f"{_code(call)}\nshould raise `{wanted}`, but it completes without an error."
    if call and not exc.startswith("AssertionError"):
        return f"{_code(call)}\nraises `{exc}`."
    statement = (d.get("statement") or "").strip()
    if statement and exc.startswith("AssertionError"):
        return f"This check fails:\n{_code(statement)}"
    if statement and exc:
        return f"Running\n{_code(statement)}\nraises `{exc}`."
    return None


def write_issue(function: str, module: str, failures: list[CaseResult], suite_source: str, rng: random.Random) -> str:
    """Markdown issue text for a bug in `module.function` that makes `failures` fail."""
    paragraphs = [p for p in (describe_failure(f) for f in failures) if p]
    if not paragraphs:
        raise ValueError(f"no failure of {function} carries enough detail to write an issue")
    shown = paragraphs[:MAX_EXAMPLES]
    calls = "\n".join(
        f"{f.detail.get('setup') or ''}\n{f.detail.get('call') or f.detail.get('statement') or ''}"
        for f in failures[:MAX_EXAMPLES]
    )
    header = suite_header(suite_source, calls)
    fmt = {"func": function, "module": module}
    parts = [
        "# " + rng.choice(_TITLES).format(**fmt),
        rng.choice(_OPENINGS).format(**fmt),
        "Setup:\n" + _code(header) if header.strip() else "",
        *shown,
        rng.choice(_CLOSINGS),
    ]
    return "\n\n".join(p for p in parts if p).strip() + "\n"
