"""What a terminal template produces for one (seed, difficulty): a `Draft` the generator turns into a Task.

A draft holds the workspace files, the setup script (bash, run in the sandbox before the agent
starts: modes, archives, git history), the request, the hint paragraph (shown only in the `hint`
variant), the hidden test (`checks` + `probes`, see checks.py), the original files a `run` check
lays over the workspace copy (`overrides`), the gold path (tool calls) and the task features the
difficulty estimate reads.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

WORDS = ("amber basil cedar delta ember fjord garnet harbor indigo juniper kestrel lumen maple nectar onyx "
         "pepper quartz raven saffron tundra umber velvet willow xenon yarrow zephyr").split()


@dataclass
class Draft:
    template: str
    files: dict[str, str]
    setup: str
    request: str
    hint: str
    checks: list[dict[str, Any]]
    gold: list[tuple[str, dict[str, Any]]]
    """(tool name, arguments) in order; the generator appends `submit`."""
    features: dict[str, Any]
    """files, steps, distractors, commands (see generator.estimate_difficulty)."""
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)
    overrides: dict[str, str] = field(default_factory=dict)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def shell(command: str) -> tuple[str, dict[str, Any]]:
    return ("run_shell", {"command": command})


def lines(rng: random.Random, n: int, width: int = 5) -> str:
    """`n` lines of seeded filler text."""
    return "".join(" ".join(rng.choice(WORDS) for _ in range(width)) + "\n" for _ in range(n))


def heredoc(path: str, text: str) -> str:
    """A setup-script line writing `text` to `path` (text from the generator's own vocabulary)."""
    assert "TERMINAL_EOF" not in text
    return f"mkdir -p \"$(dirname '{path}')\"\ncat > '{path}' <<'TERMINAL_EOF'\n{text}TERMINAL_EOF\n"
