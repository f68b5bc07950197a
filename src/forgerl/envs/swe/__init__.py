"""swe-bugfix: SWE-style bug fixing (and test writing) on real pip-installed Python packages.

Bugs are injected into real functions by AST mutation (mutate.py); a mutant becomes a task only
when hidden fail-to-pass tests catch it and pass-to-pass tests still pass (pipeline.py); the issue
is written from the failing behaviour (issue.py). The shipped set lives in data/swe/ and is rebuilt
with `python -m forgerl.envs.swe.build --out data/swe`.

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

from forgerl.envs.base import Family, Task, register_family
from forgerl.envs.swe.env import SweEnv
from forgerl.envs.swe.pipeline import FAMILY
from forgerl.errors import ConfigError

TASKS_ENV_VAR = "FORGERL_SWE_TASKS"
DEFAULT_TASKS = Path(__file__).resolve().parents[4] / "data" / "swe" / "tasks.jsonl"


def tasks_path() -> Path:
    return Path(os.environ.get(TASKS_ENV_VAR) or DEFAULT_TASKS)


@cache
def _load(path: str) -> tuple[Task, ...]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"no swe-bugfix task set at {file}; build it with `python -m forgerl.envs.swe.build --out data/swe` "
            f"or point {TASKS_ENV_VAR} at a tasks.jsonl"
        )
    tasks = []
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                tasks.append(Task.model_validate_json(line))
            except ValueError as exc:
                raise ConfigError(f"{file}:{n} is not a valid task: {exc}") from None
    if not tasks:
        raise ConfigError(f"{file} holds no tasks")
    return tuple(tasks)


def load_swe_tasks(kind: str | None = None) -> list[Task]:
    """The shipped tasks; `kind` = "bugfix" or "write_test" to keep one kind."""
    tasks = _load(str(tasks_path()))
    return [t for t in tasks if kind is None or t.data.get("kind") == kind]


def sample_task(seed: int) -> Task:
    tasks = load_swe_tasks()
    return tasks[seed % len(tasks)]


register_family(
    Family(
        name=FAMILY,
        make_env=SweEnv,
        sample_task=sample_task,
        description="Fix (or write a test for) a bug injected into a real Python package; hidden tests verify.",
    )
)

__all__ = ["FAMILY", "SweEnv", "load_swe_tasks", "sample_task", "tasks_path"]
