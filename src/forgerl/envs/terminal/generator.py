"""Seeded terminal tasks: template, difficulty, hint variant, and the difficulty estimate.

Seeds come in pairs: `seed = 2 * base + variant`. Both seeds of a pair build the same workspace,
setup script and hidden test from `base`; the odd one adds the hint paragraph to the request (M2's
Terminal-Gym strips hints so that variants share one test). The template cycles with `base`, so
16 consecutive seeds cover all 8 templates with and without hints. The task id records all of it:
`terminal/<template>/d<difficulty>/<base>/<hint|plain>`, and `data["test_sha256"]` fingerprints the
hidden test so a task file shows which variants share one.

Difficulty estimate (`data["estimated_difficulty"]`), from the features the template reports:

    value = 0.5 * steps + 0.25 * min(distractors, 4) + 0.15 * log2(1 + files)
            + 0.15 * commands - 0.5 * hint

`steps`: separate things the request asks for; `distractors`: look-alike files, decoy strings,
stale copies; `files`: files in the workspace (for git: commits + 1); `commands`: distinct commands
the gold path needs; `hint`: 1 in the hint variant. About 1.3-1.6 for the easiest task, 3-3.5
for the hardest; `forgerl envs calibrate` measures the real thing with a model.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable
from typing import Any

from forgerl.envs.base import Task
from forgerl.envs.terminal.draft import Draft
from forgerl.envs.terminal.templates_dev import build_template, git_template, service_template
from forgerl.envs.terminal.templates_fs import (
    archives_template,
    files_template,
    permissions_template,
    processes_template,
    text_template,
)
from forgerl.errors import ConfigError
from forgerl.types import ToolCall

FAMILY = "terminal"
DIFFICULTIES = (1, 2, 3)
VARIANTS = ("plain", "hint")
TEMPLATES: dict[str, Callable[[random.Random, int], Draft]] = {
    "files": files_template, "text": text_template, "processes": processes_template,
    "permissions": permissions_template, "archives": archives_template, "git": git_template,
    "build": build_template, "service": service_template,
}
TEMPLATE_NAMES = tuple(TEMPLATES)


def estimate_difficulty(features: dict[str, Any], hint: bool) -> dict[str, Any]:
    """The documented formula (module docstring) over a template's features."""
    value = (0.5 * features["steps"] + 0.25 * min(features["distractors"], 4) + 0.15 * math.log2(1 + features["files"])
             + 0.15 * len(features["commands"]) - 0.5 * hint)
    return {"value": round(value, 3), "features": {**features, "commands": len(features["commands"]), "hint": int(hint)},
            "formula": "0.5*steps + 0.25*min(distractors,4) + 0.15*log2(1+files) + 0.15*commands - 0.5*hint"}


def hidden_test_sha256(verifier: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(verifier, sort_keys=True).encode()).hexdigest()


def seed_of(template: str, base: int, hint: bool) -> int:
    """The seed whose task is `template` on base `base` (rounded to the template's cycle) in that variant."""
    index = TEMPLATE_NAMES.index(template)
    return 2 * (base - base % len(TEMPLATE_NAMES) + index) + int(hint)


def generate_task(seed: int, difficulty: int = 1) -> Task:
    if difficulty not in DIFFICULTIES:
        raise ConfigError(f"terminal difficulty must be one of {list(DIFFICULTIES)}, got {difficulty}")
    if seed < 0:
        raise ConfigError(f"terminal seeds are >= 0, got {seed}")
    base, variant = divmod(seed, 2)
    template = TEMPLATE_NAMES[base % len(TEMPLATE_NAMES)]
    draft = TEMPLATES[template](random.Random(f"terminal:{template}:{difficulty}:{base}"), difficulty)
    hint = bool(variant)
    verifier = {"checks": draft.checks, "probes": draft.probes, "overrides": draft.overrides}
    gold = [[ToolCall(id=f"gold-{i}", name=name, arguments=args)] for i, (name, args) in enumerate(draft.gold)]
    gold.append([ToolCall(id="gold-submit", name="submit", arguments={})])
    return Task(
        id=f"{FAMILY}/{template}/d{difficulty}/{base}/{VARIANTS[variant]}",
        family=FAMILY,
        prompt=draft.request + (f"\n\n{draft.hint}" if hint else ""),
        files=draft.files,
        data={"template": template, "variant": VARIANTS[variant], "base_seed": base, "setup": draft.setup,
              "test_sha256": hidden_test_sha256(verifier), "estimated_difficulty": estimate_difficulty(draft.features, hint)},
        verifier=verifier,
        difficulty=difficulty,
        gold=gold,
    )


def sample_task(seed: int) -> Task:
    return generate_task(seed, DIFFICULTIES[(seed // (2 * len(TEMPLATE_NAMES))) % len(DIFFICULTIES)])


def every_task(base: int = 0) -> list[Task]:
    """Every template at every difficulty in both variants, from base seed `base`: 48 tasks."""
    return [generate_task(seed_of(t, base, hint), d) for t in TEMPLATE_NAMES for d in DIFFICULTIES for hint in (False, True)]
