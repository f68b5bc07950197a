"""Contract 5 for appdev with the real verifier (headless Chromium in the sandbox): the gold app
scores 1.0, submitting nothing scores 0, and each seeded broken variant (a JS error in a handler,
a missing feature, a layout that overflows a phone) scores strictly between 0 and 1.

The default suite plays one template (the tip calculator: gold, the no-ops and all three broken
variants); the `browser` tier (`make test-browser`, run by CI) runs what `forgerl envs validate
appdev -n 3` runs, every template at every difficulty, one test per difficulty. Skipped only where
Chromium or Playwright is missing."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil

import pytest
from typer.testing import CliRunner

from forgerl.cli.envs import _validate_level
from forgerl.envs.appdev import DIFFICULTIES, generate_task
from forgerl.envs.appdev.templates import BY_DIFFICULTY

CHROMIUM = os.environ.get("FORGERL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None or importlib.util.find_spec("playwright") is None,
                                reason="needs Debian's chromium (apt-get install -y chromium) and playwright")


def test_one_template_gold_one_no_op_zero_broken_variants_between():
    assert generate_task(0, 1).data["template"] == "tip_calculator"
    row = asyncio.run(_validate_level("appdev", 1, 1, 0))
    assert row.problems == [] and row.ok
    assert (row.tasks, row.gold_passed, row.noop_zero, row.variants, row.variants_between) == (1, 1, 1, 3, 3)


@pytest.mark.browser
@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_envs_validate_appdev_every_template(difficulty):
    """What `forgerl envs validate appdev -n 3` checks, one difficulty per test (each well inside
    the per-test timeout): three tasks, one per template of the level."""
    assert {generate_task(s, difficulty).data["template"] for s in range(3)} == set(BY_DIFFICULTY[difficulty])
    row = asyncio.run(_validate_level("appdev", difficulty, 3, 0))
    assert row.problems == [] and row.ok
    assert (row.tasks, row.gold_passed, row.noop_zero, row.variants, row.variants_between) == (3, 3, 3, 9, 9)


def test_validate_names_appdev_on_the_command_line(monkeypatch):
    """The command runs appdev when named (here with its rows stubbed: the browser runs above)."""
    import forgerl.cli.envs as envs_cli
    from forgerl.cli.envs import ValidationRow
    from forgerl.cli.main import app

    seen = []

    async def level(family, difficulty, n, seed):
        seen.append((family, difficulty, n))
        return ValidationRow(family=family, difficulty=difficulty, tasks=n, gold_passed=n, noop_zero=n, variants=3 * n,
                             variants_between=3 * n)

    monkeypatch.setattr(envs_cli, "_validate_level", level)
    result = CliRunner().invoke(app, ["envs", "validate", "appdev", "-n", "3"])
    assert result.exit_code == 0 and "9/9" in result.output and seen == [("appdev", d, 3) for d in DIFFICULTIES]
