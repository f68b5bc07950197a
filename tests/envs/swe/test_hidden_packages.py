"""The answer key stays out of swe sandboxes: the bug-free packages installed in the venv, the
hidden suites and the task data are masked (_sandbox.py), while the honest path still works."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

import forgerl.envs.swe._sandbox as swe_sandbox
from forgerl.envs.swe import SweEnv, load_swe_tasks
from forgerl.envs.swe._sandbox import ALLOW_UNHIDDEN_ENV, new_sandbox, pristine_paths
from forgerl.errors import SandboxError
from forgerl.types import ToolCall

PRISTINE = Path(importlib.util.find_spec("inflection").origin)  # site-packages/inflection/__init__.py


def shell(env: SweEnv, command: str) -> str:
    return asyncio.run(env.execute(ToolCall(name="run_shell", arguments={"command": command})))


@pytest.fixture
def env():
    task = next(t for t in load_swe_tasks("bugfix") if t.data["package"] == "inflection")
    environment = SweEnv()
    environment.reset(task)
    yield environment
    asyncio.run(environment.close())


def test_every_task_package_install_is_on_the_hidden_list():
    hidden = set(pristine_paths())
    for name in ("inflection", "toolz", "more_itertools", "humanize", "boltons"):
        spec = importlib.util.find_spec(name)
        assert str(Path(next(iter(spec.submodule_search_locations))).resolve()) in hidden, name
    assert any(p.endswith(".dist-info") and "inflection" in p for p in hidden)
    assert str(Path(swe_sandbox.__file__).resolve().parents[2]) in hidden  # forgerl itself: the suites


def test_the_pristine_package_is_not_readable_from_the_agent_shell(env):
    out = shell(env, f"cat {PRISTINE}; ls -A {PRISTINE.parent}; cat {PRISTINE.parent.parent}/inflection.py")
    assert "def camelize" not in out
    assert "__init__.py" not in out.split("stderr:")[0]


def test_outside_the_workspace_inflection_imports_nothing_usable(env):
    out = shell(env, "cd /tmp && python3 -c 'import inflection; print(inflection.__file__); inflection.camelize'")
    assert "site-packages/inflection/__init__.py" not in out
    assert "exit code: 0" not in out
    inside = shell(env, "python3 -c 'import inflection; print(inflection.__file__)'")
    assert "/workspace/inflection/__init__.py" in inside


def test_no_hidden_suite_or_task_data_is_found_by_searching(env):
    out = shell(env, "find / \\( -path /proc -o -path /workspace \\) -prune -o \\( -name 'test_inflection*' -o -name 'tasks.jsonl' "
                     "-o -name 'suites' -o -name 'camelize*' \\) -print 2>/dev/null; echo searched")
    assert "searched" in out
    assert "test_inflection" not in out and "tasks.jsonl" not in out


def test_a_bare_pytest_run_tests_the_workspace_copy(env):
    out = shell(env, "pytest -q 2>&1 | tail -3")
    assert "passed" in out and "failed" not in out and "error" not in out.lower().split("exit code")[1]


@pytest.mark.filterwarnings("ignore::forgerl.envs.sandbox.SandboxNotIsolatedWarning")
def test_without_a_backend_that_can_hide_swe_refuses_unless_opted_in(monkeypatch):
    monkeypatch.setattr(swe_sandbox, "available_backend", lambda: "subprocess")
    monkeypatch.delenv(ALLOW_UNHIDDEN_ENV, raising=False)
    with pytest.raises(SandboxError, match=ALLOW_UNHIDDEN_ENV):
        new_sandbox({"a.py": "x = 1\n"}, 5.0)
    monkeypatch.setenv(ALLOW_UNHIDDEN_ENV, "1")
    task = next(t for t in load_swe_tasks("bugfix") if t.data["package"] == "inflection")

    async def episode():
        async with SweEnv() as environment:
            with pytest.warns(Warning):
                environment.reset(task)
            await environment.execute(ToolCall(name="submit"))
            return environment._verdict

    verdict = asyncio.run(episode())
    assert verdict.outcome == 0.0
    assert "unhidden" in verdict.evidence
