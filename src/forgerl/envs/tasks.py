"""Task sets: lists of tasks saved as JSONL (one `Task` per line) or drawn from a family's seeded
generator. A task set on disk is what an eval or a training run points at, so that its tasks do
not change when a generator does; a generated set is reproducible from (family, n, seed, difficulty).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from forgerl.envs.base import Task, family_info
from forgerl.errors import ConfigError


def save_tasks(path: str | Path, tasks: Iterable[Task]) -> int:
    """Write `tasks` as JSONL (parent folders created); returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for task in tasks:
            out.write(task.model_dump_json(exclude_defaults=False) + "\n")
            count += 1
    return count


def load_tasks(path: str | Path) -> list[Task]:
    """Read a JSONL task set. Blank lines are skipped; a bad line is a ConfigError naming the
    file, the line and what was wrong. Task ids must be unique within a set."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"task set {path} does not exist; write one with save_tasks or `generate_tasks`")
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            task = Task.model_validate(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not valid JSON ({exc.msg}); each line must be one task object") from None
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'task'}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{path}:{number}: not a valid task ({problems})") from None
        if task.id in seen:
            raise ConfigError(f"{path}:{number}: task id {task.id!r} already used on line {seen[task.id]}; ids must be unique")
        seen[task.id] = number
        tasks.append(task)
    return tasks


def task_seed(seed: int, index: int) -> int:
    """The generator seed of the `index`-th task of a set drawn with `seed` (disjoint across sets
    with different seeds for any realistic set size)."""
    return seed * 1_000_003 + index


def generate_tasks(family: str, n: int, seed: int = 0, difficulty: int | None = None) -> list[Task]:
    """`n` tasks of `family` from its seeded generator. With `difficulty` None, the family's
    difficulties are cycled (1, 2, ..., max, 1, ...) so every level is represented."""
    if n < 0:
        raise ConfigError(f"n must be >= 0, got {n}")
    fam = family_info(family)
    if difficulty is not None and difficulty not in fam.difficulties:
        raise ConfigError(f"family {family!r} has difficulties {list(fam.difficulties)}, got {difficulty}")
    levels = fam.difficulties
    tasks = []
    for index in range(n):
        level = difficulty if difficulty is not None else levels[index % len(levels)]
        tasks.append(fam.task(task_seed(seed, index), level if fam.generate is not None else None))
    return tasks
