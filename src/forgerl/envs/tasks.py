"""Task sets: lists of tasks saved as JSONL (one `Task` per line) or drawn from a family's seeded
generator. A task set on disk is what an eval or a training run points at, so that its tasks do
not change when a generator does; a generated set is reproducible from (family, n, seed, difficulty).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError

from forgerl.envs.base import Task, family_info, list_families
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


MAX_TASK_FILE_BYTES = 1 << 30
"""A task set larger than this (1 GiB) is refused before reading: the whole set is held in memory."""
MAX_TASK_LINE_BYTES = 16 << 20
"""One task (one line) larger than this (16 MiB) is refused; the largest shipped task is ~4 KB."""
MAX_TASK_DEPTH = 64
"""Deepest nesting of arrays/objects a task may have. Real tasks stay under ~10 levels; the cap keeps
a hostile file from exhausting the parser's (or later a renderer's) recursion."""


def load_tasks(path: str | Path, *, max_file_bytes: int = MAX_TASK_FILE_BYTES,
               max_line_bytes: int = MAX_TASK_LINE_BYTES) -> list[Task]:
    """Read a JSONL task set. Blank lines are skipped; a bad line is a ConfigError naming the
    file, the line and what was wrong. Task ids must be unique within a set, and every task's
    family must be registered (a typo would otherwise surface only when the task is run).

    The file is hostile input: it is read line by line with a bounded read, decoded strictly as
    UTF-8 (a leading byte-order mark is allowed), and nesting is capped at MAX_TASK_DEPTH."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"task set {path} does not exist; write one with save_tasks or `generate_tasks`")
    size = path.stat().st_size
    if size > max_file_bytes:
        raise ConfigError(f"{path} is {size} bytes; task files are limited to {max_file_bytes} bytes: "
                          "split the set into several files")
    known_families = set(list_families())
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    with path.open("rb") as lines:
        for number, text in enumerate(_bounded_lines(lines, path, max_line_bytes), start=1):
            if not text.strip():
                continue
            task = _parse_task(text, f"{path}:{number}")
            if task.family not in known_families:
                raise ConfigError(f"{path}:{number}: unknown task family {task.family!r}; known families: "
                                  f"{', '.join(sorted(known_families))} (register a custom one with "
                                  "register_family before loading)")
            if task.id in seen:
                raise ConfigError(f"{path}:{number}: task id {task.id!r} already used on line {seen[task.id]}; "
                                  "ids must be unique")
            seen[task.id] = number
            tasks.append(task)
    return tasks


def load_family_task_set(path: str | Path, family: str, *, env_var: str, build: str) -> tuple[Task, ...]:
    """A shipped task set of one family (swe-bugfix, swe-js, swe-go) through the hardened loader,
    checked to hold only that family's tasks. A missing file names the command that builds it and
    the environment variable that points elsewhere."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"no {family} task set at {file}; build it with `{build}` or point {env_var} at a tasks.jsonl")
    tasks = load_tasks(file)
    for task in tasks:
        if task.family != family:
            raise ConfigError(f"{file}: task {task.id!r} is a {task.family!r} task; a {family} task set holds only "
                              f"{family!r} tasks (check {env_var})")
    if not tasks:
        raise ConfigError(f"{file} holds no tasks")
    return tuple(tasks)


def _bounded_lines(lines: BinaryIO, path: Path, max_line_bytes: int) -> Iterator[str]:
    """Each line decoded as UTF-8, never reading more than `max_line_bytes` + 1 bytes of one line."""
    number = 0
    while raw := lines.readline(max_line_bytes + 1):
        number += 1
        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            raise ConfigError(f"{path}:{number}: line longer than {max_line_bytes} bytes; one task per line "
                              "must stay under that (move large workspaces out of the task file)")
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            column = len(raw[:exc.start].decode("utf-8")) + 1
            raise ConfigError(f"{path}:{number}: column {column} (byte {exc.start + 1} of the line) is not UTF-8 "
                              f"(byte 0x{raw[exc.start]:02x}); save the task file as UTF-8") from None


def _parse_task(text: str, where: str) -> Task:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc.msg}); each line must be one task object") from None
    except RecursionError:
        raise ConfigError(f"{where}: JSON nested deeper than {MAX_TASK_DEPTH} levels; flatten the task data") from None
    problem = _structure_problem(value)
    if problem:
        raise ConfigError(f"{where}: {problem}")
    try:
        return Task.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'task'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{where}: not a valid task ({problems})") from None


def _structure_problem(value: object) -> str | None:
    """What makes a parsed line unusable downstream, or None: nesting past MAX_TASK_DEPTH, or a string
    with an unpaired surrogate escape (valid JSON, but not encodable as UTF-8 when sent or stored).
    Walks iteratively, so the check itself cannot overflow the stack."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return "a string holds an unpaired surrogate escape (\\ud800-\\udfff); write the character itself"
            continue
        if isinstance(item, dict | list):
            if depth > MAX_TASK_DEPTH:
                return f"JSON nested deeper than {MAX_TASK_DEPTH} levels; flatten the task data"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


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
