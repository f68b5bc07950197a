"""swe-go: the coding task kinds (bug fix, write-a-test, feature, perf, merged bugs) on real Go
packages from Debian's `golang-*-dev` sources, verified by the packages' own hidden Go tests.

Edits are found on tree-sitter-go syntax trees (gosrc.py); a mutant becomes a task under the Python
pipeline's acceptance rules (pipeline.py); tests build and run offline in GOPATH mode in fresh
sandboxes whose result channel is cross-checked against tampering (gorun.py); perf tasks are timed
by the host on a hidden benchmark program (perf.py). The shipped set lives in data/swe_go/ and is
rebuilt with `python -m forgerl.envs.swe_go.build --out data/swe_go`. Like swe-bugfix, it is a
fixed suite split once by a hash of package:function, so a bug, its write-test twin and every other
task on the same function share a side (a merged task goes by its first function).

```python
from forgerl.envs.swe_go import SweGoEnv, load_go_tasks
task = load_go_tasks("bugfix")[0]
async with SweGoEnv() as env:
    messages = env.reset(task)
```
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from forgerl.envs.base import Family, Task, register_family, submit_nothing
from forgerl.envs.suites import FixedSuite
from forgerl.envs.swe_go.env import SweGoEnv
from forgerl.envs.swe_go.pipeline import FAMILY
from forgerl.envs.tasks import load_family_task_set

TASKS_ENV_VAR = "FORGERL_SWE_GO_TASKS"
DEFAULT_TASKS = Path(__file__).resolve().parents[4] / "data" / "swe_go" / "tasks.jsonl"


def tasks_path() -> Path:
    return Path(os.environ.get(TASKS_ENV_VAR) or DEFAULT_TASKS)


@cache
def _load(path: str) -> tuple[Task, ...]:
    return load_family_task_set(path, FAMILY, env_var=TASKS_ENV_VAR, build="python -m forgerl.envs.swe_go.build --out data/swe_go")


def split_key(task: Task) -> str:
    """The function the task is about decides its side of the split (see the module docstring)."""
    return f"{task.data.get('package')}:{task.data.get('function')}"


@cache
def _suite(path: str) -> FixedSuite[Task]:
    return FixedSuite(_load(path), key=split_key, salt=FAMILY)


def go_suite() -> FixedSuite[Task]:
    return _suite(str(tasks_path()))


def load_go_tasks(kind: str | None = None) -> list[Task]:
    """The shipped tasks; `kind` keeps one kind (bugfix, feature, perf, write_test, merged)."""
    return [t for t in _load(str(tasks_path())) if kind is None or t.data.get("kind") == kind]


def sample_task(seed: int) -> Task:
    """Training seeds draw training tasks; held-out seeds (>= 10,000,000) draw held-out ones."""
    return go_suite().item(seed)


register_family(
    Family(
        name=FAMILY,
        make_env=SweGoEnv,
        sample_task=sample_task,
        noop=submit_nothing("submit"),
        description="Fix, test, implement or speed up code in a real Go package; its own hidden Go tests verify.",
    )
)

__all__ = ["FAMILY", "SweGoEnv", "go_suite", "load_go_tasks", "sample_task", "split_key", "tasks_path"]
