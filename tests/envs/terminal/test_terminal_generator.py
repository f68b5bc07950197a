"""The terminal generator: determinism, variants sharing one hidden test, hidden values kept out of
the prompt and workspace, the difficulty estimate, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgerl.envs.base import Task
from forgerl.envs.tasks import generate_tasks, load_tasks
from forgerl.envs.terminal import DIFFICULTIES, TEMPLATE_NAMES, every_task, generate_task, seed_of
from forgerl.envs.terminal.env import check_task
from forgerl.envs.terminal.generator import estimate_difficulty, hidden_test_sha256
from forgerl.errors import ConfigError


def test_same_seed_gives_a_byte_identical_task() -> None:
    for seed in range(0, 32, 3):
        for level in DIFFICULTIES:
            assert generate_task(seed, level).model_dump_json() == generate_task(seed, level).model_dump_json()


def test_different_bases_draw_different_values() -> None:
    a, b = generate_task(seed_of("text", 0, False), 2), generate_task(seed_of("text", 8, False), 2)
    assert a.data["template"] == b.data["template"] == "text"
    assert a.files != b.files and a.verifier != b.verifier


def test_every_template_at_every_difficulty_in_both_variants() -> None:
    tasks = every_task(0)
    assert len(tasks) == len(TEMPLATE_NAMES) * len(DIFFICULTIES) * 2 == 48
    seen = {(t.data["template"], t.difficulty, t.data["variant"]) for t in tasks}
    assert len(seen) == 48 and len(TEMPLATE_NAMES) >= 8
    assert len({t.id for t in tasks}) == 48
    for task in tasks:
        assert task.id == f"terminal/{task.data['template']}/d{task.difficulty}/{task.data['base_seed']}/{task.data['variant']}"
        check_task(task)


def test_consecutive_seeds_cover_every_template_and_variant() -> None:
    tasks = [generate_task(seed, 1) for seed in range(16)]
    assert {(t.data["template"], t.data["variant"]) for t in tasks} == {(n, v) for n in TEMPLATE_NAMES for v in ("plain", "hint")}


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_hint_variants_share_exactly_the_same_test_and_workspace(template: str) -> None:
    for level in DIFFICULTIES:
        plain, hinted = generate_task(seed_of(template, 0, False), level), generate_task(seed_of(template, 0, True), level)
        assert plain.verifier == hinted.verifier
        assert plain.data["test_sha256"] == hinted.data["test_sha256"] == hidden_test_sha256(plain.verifier)
        assert plain.files == hinted.files and plain.data["setup"] == hinted.data["setup"]
        assert hinted.prompt.startswith(plain.prompt) and "Hint:" in hinted.prompt and "Hint:" not in plain.prompt
        assert plain.id.endswith("/plain") and hinted.id.endswith("/hint")
        assert hinted.data["estimated_difficulty"]["value"] == pytest.approx(plain.data["estimated_difficulty"]["value"] - 0.5)


SECRET_CHECKS = {"text": ("file", "text"), "processes": ("file", "text"), "build": ("run", "stdout"),
                 "service": ("run", "stdout")}


def test_answers_the_agent_must_compute_are_never_in_the_prompt_files_or_setup() -> None:
    """What the agent has to work out (a count, a report, a job's output, a program's output on
    hidden inputs, the service's answer) appears nowhere it can read before acting."""
    checked = 0
    for task in every_task(0):
        op_key = SECRET_CHECKS.get(task.data["template"])
        if op_key is None:
            continue
        visible = task.prompt + "\n".join(task.files.values()) + task.data["setup"]
        for check in task.verifier["checks"]:
            if check["op"] == op_key[0] and len(check[op_key[1]].strip()) > 2:
                assert check[op_key[1]].strip() not in visible, task.id
                checked += 1
    assert checked >= 12


def test_the_test_itself_is_not_part_of_the_task_the_agent_sees() -> None:
    for task in every_task(0):
        visible = task.prompt + json.dumps(task.files)
        assert task.data["test_sha256"] not in visible
        for check in task.verifier["checks"]:
            if check["op"] == "run":
                assert check["script"] not in visible


def test_the_run_checks_probe_inputs_are_not_in_the_workspace() -> None:
    build = generate_task(seed_of("build", 0, False), 2)
    script = build.verifier["checks"][0]["script"]
    hidden_args = [line.split()[-1] for line in script.splitlines() if line.startswith("./build/app")]
    assert len(hidden_args) == 2
    visible = build.prompt + json.dumps(build.files)
    assert not any(arg in visible for arg in hidden_args)


def test_difficulty_estimate_follows_the_documented_formula() -> None:
    features = {"files": 7, "steps": 2, "distractors": 6, "commands": ["a", "b", "c"]}
    estimate = estimate_difficulty(features, hint=False)
    assert estimate["value"] == pytest.approx(0.5 * 2 + 0.25 * 4 + 0.15 * 3 + 0.15 * 3)
    assert estimate["features"] == {"files": 7, "steps": 2, "distractors": 6, "commands": 3, "hint": 0}
    assert estimate_difficulty(features, hint=True)["value"] == pytest.approx(estimate["value"] - 0.5)


def test_the_estimate_grows_with_the_dial_on_average() -> None:
    tasks = every_task(0)
    mean = {d: sum(t.data["estimated_difficulty"]["value"] for t in tasks if t.difficulty == d) / 16 for d in DIFFICULTIES}
    assert mean[1] < mean[2] < mean[3]


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="difficulty must be one of"):
        generate_task(0, 4)
    with pytest.raises(ConfigError, match="seeds are >= 0"):
        generate_task(-1, 1)
    bad = generate_task(0, 1).model_copy(update={"verifier": {}})
    with pytest.raises(ConfigError, match="not a terminal task"):
        check_task(bad)


def test_the_shipped_task_file_is_the_generators_output() -> None:
    """data/terminal/tasks.jsonl = `forgerl envs export terminal -n 48 --out data/terminal/tasks.jsonl`,
    up to what `envs calibrate` writes into it (difficulty, data.calibration)."""
    shipped = load_tasks(Path(__file__).resolve().parents[3] / "data" / "terminal" / "tasks.jsonl")

    def core(task: Task) -> dict:
        dumped = task.model_dump(mode="json", exclude={"difficulty"})
        dumped["data"].pop("calibration", None)
        return dumped

    assert [core(t) for t in shipped] == [core(t) for t in generate_tasks("terminal", 48)]
