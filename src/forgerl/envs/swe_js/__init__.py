"""swe-js: SWE tasks of every kind on real npm packages, in JavaScript, run with the machine's Node.

Bugs, removed features and slowdowns are injected into real functions of pinned npm packages
(semver, ms, camelcase, natural-compare, pluralize) through tree-sitter (mutate.py); a candidate
becomes a task under swe-bugfix's acceptance rules (pipeline.py), with hidden suites written for
forgerl (suites/*.cases) and judged on the host (judge.py). Kinds (forgerl.envs.swe.tasktypes):
bugfix, write_test (test inversion), feature, perf (timed by the host against the slow version)
and merged (two bugs). The shipped set lives in data/swe_js/ and is rebuilt with
`python -m forgerl.envs.swe_js.build --out data/swe_js`; the packages are installed by `make setup`.

The set is a `FixedSuite` split by a hash of package:module:target, so every task about one
function (its bugs, their write-test twins, its feature and perf tasks, merged pairs) lands on
one side: held-out evaluation never meets a function the policy trained on. The shipped 243 tasks
(74 bugfix, 74 write_test, 39 feature, 26 perf, 30 merged) split into 170 training tasks (25
targets) and 73 held-out ones (12 targets); camelcase is held out whole, pluralize and
natural-compare train only (one target each).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from forgerl.envs.base import Family, Task, register_family, submit_nothing
from forgerl.envs.suites import FixedSuite
from forgerl.envs.swe_js.env import SweJsEnv
from forgerl.envs.swe_js.packages import ROOT
from forgerl.envs.swe_js.pipeline import FAMILY, HELD_OUT_FRACTION
from forgerl.envs.tasks import load_family_task_set

TASKS_ENV_VAR = "FORGERL_SWE_JS_TASKS"
DEFAULT_TASKS = ROOT / "data" / "swe_js" / "tasks.jsonl"


def tasks_path() -> Path:
    return Path(os.environ.get(TASKS_ENV_VAR) or DEFAULT_TASKS)


@cache
def _load(path: str) -> tuple[Task, ...]:
    return load_family_task_set(path, FAMILY, env_var=TASKS_ENV_VAR, build="python -m forgerl.envs.swe_js.build --out data/swe_js")


def split_key(task: Task) -> str:
    data = task.data
    return f"{data.get('package')}:{data.get('module')}:{data.get('function')}"


@cache
def _suite(path: str) -> FixedSuite[Task]:
    return FixedSuite(_load(path), key=split_key, salt=FAMILY, held_out_fraction=HELD_OUT_FRACTION)


def swe_js_suite() -> FixedSuite[Task]:
    return _suite(str(tasks_path()))


def load_swe_js_tasks(kind: str | None = None) -> list[Task]:
    return [t for t in _load(str(tasks_path())) if kind is None or t.data.get("kind") == kind]


def sample_task(seed: int) -> Task:
    """Training seeds draw training tasks; held-out seeds (>= 10,000,000) draw held-out ones."""
    return swe_js_suite().item(seed)


register_family(
    Family(
        name=FAMILY,
        make_env=SweJsEnv,
        sample_task=sample_task,
        noop=submit_nothing("submit"),
        description="Fix, test, implement or speed up code in a real npm package (JavaScript); hidden tests verify.",
    )
)

__all__ = ["FAMILY", "SweJsEnv", "load_swe_js_tasks", "sample_task", "split_key", "swe_js_suite", "tasks_path"]
