"""Contract 5 for appdev with the real verifier (headless Chromium in the sandbox): the gold app
scores 1.0, submitting nothing scores 0, and each seeded broken variant (a JS error in a handler,
a missing feature, a layout that overflows a phone) scores strictly between 0 and 1.

The default suite plays one template (the tip calculator: gold, the no-ops and all three broken
variants); the `browser` tier (`make test-browser`, run by CI) runs `forgerl envs validate appdev`
over every template at every difficulty. Skipped only where Chromium or Playwright is missing."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil

import pytest
from typer.testing import CliRunner

from forgerl.cli.envs import _validate_level
from forgerl.envs.appdev import TEMPLATES, generate_task

CHROMIUM = os.environ.get("FORGERL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None or importlib.util.find_spec("playwright") is None,
                                reason="needs Debian's chromium (apt-get install -y chromium) and playwright")


def test_one_template_gold_one_no_op_zero_broken_variants_between():
    assert generate_task(0, 1).data["template"] == "tip_calculator"
    row = asyncio.run(_validate_level("appdev", 1, 1, 0))
    assert row.problems == [] and row.ok
    assert (row.tasks, row.gold_passed, row.noop_zero, row.variants, row.variants_between) == (1, 1, 1, 3, 3)


@pytest.mark.browser
def test_envs_validate_appdev_every_template_and_difficulty():
    from forgerl.cli.main import app

    result = CliRunner().invoke(app, ["envs", "validate", "appdev", "-n", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.count("yes") == 3 and "9/9" in result.output and "NO" not in result.output
    assert len(TEMPLATES) == 9  # -n 3 per difficulty covers every template (seed % 3 picks it)
