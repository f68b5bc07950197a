"""The shipped swe-go set: the issue's targets, the split, and (slow) gold 1 / no-op 0 on one task
of every kind."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from forgerl.envs.swe.tasktypes import TASK_KINDS
from forgerl.envs.swe_go import go_suite, load_go_tasks, split_key
from forgerl.envs.swe_go.validate import validate
from tests.envs.swe_go.conftest import needs_go


def test_targets_of_the_issue() -> None:
    tasks = load_go_tasks()
    kinds = Counter(t.data["kind"] for t in tasks)
    assert len(tasks) >= 100 and all(kinds[k] >= 20 for k in TASK_KINDS), kinds
    assert len({t.data["package"] for t in tasks}) >= 3
    assert len({t.id for t in tasks}) == len(tasks)
    for task in tasks:
        data = task.data
        assert data["language"] == "go" and set(data["f2p"]).isdisjoint(data["p2p"])
        assert bool(data["f2p"]) == (data["kind"] != "perf"), task.id
        assert len(data["edits"]) == (2 if data["kind"] == "merged" else 1)


def test_split_is_by_function() -> None:
    split = go_suite().split
    train, held = {split_key(t) for t in split.train}, {split_key(t) for t in split.held_out}
    assert train and held and train.isdisjoint(held)


@needs_go
@pytest.mark.slow
def test_gold_and_noop_on_one_task_of_every_kind() -> None:
    sample = [next(t for t in load_go_tasks(kind)) for kind in TASK_KINDS]
    summary = asyncio.run(validate(sample, perf_repeats=1))
    assert summary["gold_all_one"] == summary["noop_zero"] == len(TASK_KINDS), summary["rows"]
