"""swe-bugfix: SWE-style bug fixing (and test writing) on real pip-installed Python packages.

Bugs are injected into real functions by AST mutation (mutate.py); a mutant becomes a task only
when hidden fail-to-pass tests catch it and pass-to-pass tests still pass (pipeline.py); the issue
is written from the failing behaviour (issue.py). The shipped set lives in data/swe/ and is rebuilt
with `python -m forgerl.envs.swe.build --out data/swe`.

Every task kind of tasktypes.py is here (`data["kind"]`): bug fixes and their write-test
inversions (pipeline.py), and feature, perf and merged tasks made from the same packages and
suites (kinds.py; perf timing in perf.py). The shipped set is a fixed-size suite
(`forgerl.envs.suites.FixedSuite`), split once by a hash of package:module:function, so a bug, its
test-inversion twin and every other task on the same function land on the same side (a merged
task's two functions are paired on one side, and it splits by the first). Counts per kind and
split: data/swe/report.md.

```python
from forgerl.envs.swe import SweEnv, load_swe_tasks
task = load_swe_tasks()[0]
async with SweEnv() as env:
    messages = env.reset(task)
```
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from forgerl.envs.base import Family, Task, register_family, submit_nothing
from forgerl.envs.suites import FixedSuite
from forgerl.envs.swe.env import SweEnv
from forgerl.envs.swe.pipeline import FAMILY
from forgerl.envs.swe.tasktypes import TASK_KINDS
from forgerl.envs.tasks import load_family_task_set

TASKS_ENV_VAR = "FORGERL_SWE_TASKS"
DEFAULT_TASKS = Path(__file__).resolve().parents[4] / "data" / "swe" / "tasks.jsonl"


def tasks_path() -> Path:
    return Path(os.environ.get(TASKS_ENV_VAR) or DEFAULT_TASKS)


@cache
def _load(path: str) -> tuple[Task, ...]:
    return load_family_task_set(path, FAMILY, env_var=TASKS_ENV_VAR, build="python -m forgerl.envs.swe.build --out data/swe")


def split_key(task: Task) -> str:
    """What decides a task's side of the split: the function its bug is in. A bug's write-test
    twin and all mutants of one function then share a side, so held-out evaluation never meets a
    function the policy was trained to fix."""
    data = task.data
    return f"{data.get('package')}:{data.get('module')}:{data.get('function')}"


def interleave_kinds(tasks: tuple[Task, ...]) -> list[Task]:
    """The tasks round-robin by kind (in TASK_KINDS order, each kind in file order): consecutive
    seeds, and so `forgerl envs validate swe-bugfix -n N`'s sample, meet every kind instead of
    hundreds of bug fixes first. A full cycle of seeds still draws each task once."""
    by_kind = [[t for t in tasks if t.data.get("kind") == kind] for kind in TASK_KINDS]
    rest = [t for t in tasks if t.data.get("kind") not in TASK_KINDS]
    ordered = [group[i] for i in range(max(map(len, by_kind), default=0)) for group in by_kind if i < len(group)]
    return ordered + rest


@cache
def _suite(path: str) -> FixedSuite[Task]:
    return FixedSuite(interleave_kinds(_load(path)), key=split_key, salt=FAMILY)


def swe_suite() -> FixedSuite[Task]:
    """The shipped tasks split into training and held-out sides (see the module docstring)."""
    return _suite(str(tasks_path()))


def load_swe_tasks(kind: str | None = None) -> list[Task]:
    """The shipped tasks; `kind` (one of tasktypes.TASK_KINDS) keeps one kind."""
    tasks = _load(str(tasks_path()))
    return [t for t in tasks if kind is None or t.data.get("kind") == kind]


def sample_task(seed: int) -> Task:
    """Training seeds draw training tasks; held-out seeds (>= 10,000,000) draw held-out ones;
    consecutive seeds cycle through the kinds (`interleave_kinds`)."""
    return swe_suite().item(seed)


register_family(
    Family(
        name=FAMILY,
        make_env=SweEnv,
        sample_task=sample_task,
        noop=submit_nothing("submit"),
        description="Fix a bug, implement a feature, speed up a slow function or write a test, in a real Python "
                    "package; hidden tests (and a host-timed benchmark) verify.",
    )
)

__all__ = ["FAMILY", "SweEnv", "load_swe_tasks", "sample_task", "split_key", "swe_suite", "tasks_path"]
