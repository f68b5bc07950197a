"""swe-bugfix as a fixed-size suite: held-out seeds never draw a training function, the family
declares its no-op, and the task file goes through the hardened loader."""

from __future__ import annotations

import pytest

from forgerl.envs.base import family_info
from forgerl.envs.suites import HELD_OUT_SEED_BASE
from forgerl.envs.swe import (
    DEFAULT_TASKS,
    FAMILY,
    TASKS_ENV_VAR,
    _load,
    load_swe_tasks,
    sample_task,
    split_key,
    swe_suite,
)
from forgerl.errors import ConfigError

TRAIN_SEEDS = range(0, 5000)
HELD_OUT_SEEDS = range(HELD_OUT_SEED_BASE, HELD_OUT_SEED_BASE + 5000)


def test_training_and_held_out_seeds_never_share_a_function():
    train_keys = {split_key(sample_task(seed)) for seed in TRAIN_SEEDS}
    held_out_keys = {split_key(sample_task(seed)) for seed in HELD_OUT_SEEDS}
    assert held_out_keys and train_keys
    assert not train_keys & held_out_keys


def test_every_task_is_reachable_and_the_sides_have_the_documented_sizes():
    suite = swe_suite()
    assert (len(suite.split.train), len(suite.split.held_out)) == (554, 107)
    assert {t.id for t in suite.split.train} == {sample_task(s).id for s in range(554)}
    assert {t.id for t in suite.split.held_out} == {sample_task(HELD_OUT_SEED_BASE + s).id for s in range(107)}


def test_a_bug_and_its_write_test_twin_share_a_side():
    held_out = {t.id for t in swe_suite().split.held_out}
    for task in load_swe_tasks("bugfix"):
        assert (task.id in held_out) == (f"{task.id}/write-test" in held_out), task.id


def test_every_kind_is_on_both_sides_and_a_merged_task_pairs_functions_of_one_side():
    suite = swe_suite()
    held_out = {t.id for t in suite.split.held_out}
    for kind in ("bugfix", "write_test", "feature", "perf", "merged"):
        tasks = load_swe_tasks(kind)
        assert any(t.id in held_out for t in tasks) and any(t.id not in held_out for t in tasks), kind
    by_function = {split_key(t): t.id in held_out for t in load_swe_tasks("bugfix")}
    for task in load_swe_tasks("merged"):
        first, second = (f"{task.data['package']}:{task.data['module']}:{f}" for f in task.data["functions"])
        assert by_function.get(first, task.id in held_out) == by_function.get(second, task.id in held_out) == (
            task.id in held_out), task.id


def test_consecutive_seeds_meet_every_kind():
    kinds = {"bugfix", "write_test", "feature", "perf", "merged"}
    assert {sample_task(seed).data["kind"] for seed in range(10)} == kinds  # what `envs validate -n 10` plays
    assert {sample_task(HELD_OUT_SEED_BASE + s).data["kind"] for s in range(10)} == kinds


def test_family_declares_submit_as_its_noop():
    family = family_info(FAMILY)
    assert family.noop is not None
    task = load_swe_tasks()[0]
    [[call]] = family.noop(task)
    assert call.name == "submit"


@pytest.fixture
def task_file(tmp_path, monkeypatch):
    path = tmp_path / "tasks.jsonl"
    monkeypatch.setenv(TASKS_ENV_VAR, str(path))
    _load.cache_clear()
    yield path
    _load.cache_clear()


def test_a_task_file_with_invalid_utf8_names_file_line_and_byte(task_file):
    good = _load(str(DEFAULT_TASKS))[0].model_dump_json()
    task_file.write_bytes(good.encode() + b"\n" + b'{"id": "x\xff"}\n')
    with pytest.raises(ConfigError) as err:
        load_swe_tasks()
    assert f"{task_file}:2" in str(err.value) and "UTF-8" in str(err.value)


def test_a_task_file_of_another_family_is_refused(task_file):
    other = _load(str(DEFAULT_TASKS))[0].model_copy(update={"family": "tool-reasoning"})
    task_file.write_text(other.model_dump_json() + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="swe-bugfix task set holds only"):
        load_swe_tasks()
