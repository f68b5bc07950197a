"""The visual layer counts only when the app is there: a page without the requested controls
must not collect the visual items an empty page satisfies trivially (no horizontal scroll,
contrast, no overlap). Before `require_presence` a page saying "Hello" scored 3 of 7."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil

import pytest

from forgerl.envs.appdev import generate_task
from forgerl.envs.appdev.generator import task_rubric
from forgerl.envs.appdev.rubric import GATE_ID, ItemVerdict, outcome, require_presence

CHROMIUM = os.environ.get("FORGERL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _verdicts(rubric, failing):
    return [ItemVerdict(id=i.id, layer=i.layer, passed=i.id not in failing, reason="measured") for i in rubric.items]


def test_visual_items_fail_when_the_named_controls_are_not_on_screen():
    rubric = task_rubric(generate_task(0, 1))
    interaction = {i.id for i in rubric.items if i.layer == "interaction"}
    items = require_presence(rubric, _verdicts(rubric, interaction | {"phone_controls_on_screen"}))
    assert not any(v.passed for v in items)
    assert all("not counted" in v.reason and "measured" in v.reason for v in items if v.layer == "visual"
               and v.id != "phone_controls_on_screen")
    gate = ItemVerdict(id=GATE_ID, layer="execution", passed=True)
    assert outcome(gate, items) == 0.0


def test_visual_items_count_when_the_controls_are_there_even_if_every_flow_fails():
    rubric = task_rubric(generate_task(0, 1))
    interaction = {i.id for i in rubric.items if i.layer == "interaction"}
    before = _verdicts(rubric, interaction)  # a UI whose logic throws: the visual layer still judges it
    assert require_presence(rubric, before) == before


@pytest.mark.skipif(CHROMIUM is None or importlib.util.find_spec("playwright") is None,
                    reason="needs Debian's chromium and the playwright package (make setup installs both)")
def test_a_page_that_is_not_the_app_scores_zero_in_the_browser():
    from forgerl.envs.appdev.executor import verify_app

    task = generate_task(0, 1)
    page = "<!doctype html><html><head><title>x</title></head><body><p>Hello</p></body></html>"
    report = asyncio.run(verify_app({"index.html": page}, task_rubric(task)))
    assert report.gate.passed and report.outcome == 0.0, [(i.id, i.passed, i.reason) for i in report.items]
