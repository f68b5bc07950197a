"""Seeded AppDev tasks: a user request plus a hidden rubric, drawn from (seed, difficulty).

The difficulty dial picks the kind of app (templates.py):
1. one-widget pages: a tip calculator, a unit converter, a counter;
2. apps with state: a todo list with filters, a sign-up form with validation, a sortable table;
3. multi-view apps with state that persists: a todo list kept in localStorage (checked across a
   reload), an expense tracker with hash-routed views, a notes app with a Python standard-library
   server that keeps the notes.

Within a level the template is `(seed + seed // 3) % 3`: three consecutive seeds from a multiple
of 3 cover every template (`envs validate appdev -n 3` at seed 0 sees them all; any five
consecutive seeds do), and so do the seeds of one residue mod 3, which is what a mixed-difficulty
set hands each level (`sample_task`: level 1 + seed % 3; generate_tasks cycles levels by index),
so the level and the template are never locked together. The rest (ids, wording, values) comes
from an rng seeded by (family, difficulty, seed). A task stores the template's params (`data.params`), the rubric
(`verifier.rubric`) and the hidden values (`data.hidden`, for tests); the gold app and its broken
variants are rebuilt from the params on demand (`gold_files`, `broken_variants`).
"""

from __future__ import annotations

import random
import re

from forgerl.envs.appdev.rubric import Rubric
from forgerl.envs.appdev.templates import BY_DIFFICULTY, TEMPLATES, VARIANTS, Template
from forgerl.envs.appdev.templates.common import CLOSINGS
from forgerl.envs.base import Task
from forgerl.errors import ConfigError

FAMILY = "appdev"
DIFFICULTIES = (1, 2, 3)
VERIFIER_TYPE = "appdev"
MAX_REDRAWS = 100


def appears_in(value: str, text: str) -> bool:
    """True when `value` occurs in `text` as a token of its own (not inside a longer word or
    number): "12.5" is in "costs 12.5 now" but not in "1.609344" or "112.50"."""
    return re.search(rf"(?<![\w.]){re.escape(value)}(?![\w])", text) is not None


def generate_task(seed: int, difficulty: int = 1) -> Task:
    """One AppDev task; the same (seed, difficulty) always gives the same task."""
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"appdev difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    names = BY_DIFFICULTY[difficulty]
    name = names[(seed + seed // 3) % len(names)]
    template = TEMPLATES[name]
    rng = random.Random(f"{FAMILY}:{difficulty}:{seed}")
    for _ in range(MAX_REDRAWS):
        params = template.draw(rng) | {"closing": rng.randrange(len(CLOSINGS))}
        prompt, hidden = template.request(params), template.hidden(params)
        if not any(appears_in(v, prompt) for v in hidden):
            break
    else:  # pragma: no cover - the pools make a clash rare; a template that always clashes is a bug
        raise RuntimeError(f"template {name} kept showing a hidden value in its request (seed {seed})")
    rubric = template.rubric(params)
    return Task(
        id=f"{FAMILY}-d{difficulty}-{name}-{seed}",
        family=FAMILY,
        prompt=prompt,
        data={"template": name, "params": params, "hidden": hidden},
        verifier={"type": VERIFIER_TYPE, "rubric": rubric.model_dump(mode="json")},
        difficulty=difficulty,
    )


def sample_task(seed: int) -> Task:
    """The registry's entry point: difficulty cycles with the seed (1, 2, 3, 1, ...)."""
    return generate_task(seed, difficulty=1 + seed % len(DIFFICULTIES))


def _template(task: Task) -> Template:
    name = task.data.get("template")
    if task.family != FAMILY or name not in TEMPLATES or "params" not in task.data:
        raise ConfigError(f"task {task.id!r} is not an appdev task (need data.template in {sorted(TEMPLATES)} and "
                          "data.params, as forgerl.envs.appdev.generator.generate_task makes)")
    return TEMPLATES[name]


def task_rubric(task: Task) -> Rubric:
    """The hidden rubric of an appdev task (a ConfigError when the task does not carry one)."""
    _template(task)
    if task.verifier.get("type") != VERIFIER_TYPE or "rubric" not in task.verifier:
        raise ConfigError(f"task {task.id!r} has no appdev rubric in its verifier spec (type {VERIFIER_TYPE!r})")
    return Rubric.model_validate(task.verifier["rubric"])


def gold_files(task: Task) -> dict[str, str]:
    """The reference app for `task` (relative path -> text)."""
    return _template(task).files(task.data["params"], "gold")


def broken_variants(task: Task) -> dict[str, dict[str, str]]:
    """The seeded broken apps for `task`, by variant name (templates.VARIANTS): each must score
    strictly between 0 and 1."""
    template = _template(task)
    return {variant: template.files(task.data["params"], variant) for variant in VARIANTS}
