"""Rebuilding a task's files from the installed package: the original, the buggy copy, the
visible tests and the hidden tests. A task stores only the mutation hunk and the file's hash."""

from __future__ import annotations

from forgerl.envs.base import Task
from forgerl.envs.swe.mutate import Mutation
from forgerl.envs.swe.packages import installed_sources, package_by_dist, sha256, suite_text
from forgerl.envs.swe.tasktypes import TASK_KINDS
from forgerl.envs.swe.verify import select_tests
from forgerl.errors import ConfigError

PYTEST_INI = "[pytest]\naddopts = -p no:cacheprovider\npythonpath = .\n"
"""`pythonpath = .`: a bare `pytest` (not `python -m pytest`) imports the workspace's package too,
not the site-packages name the sandbox masks (_sandbox.py)."""
REQUIRED_KEYS = ("kind", "package", "version", "module", "source_sha256", "function", "mutation", "suite",
                 "test_file", "f2p", "p2p", "issue")  # fmt: skip


def check_task(task: Task) -> dict:
    """The task's data, after checking it has what an swe-bugfix task needs."""
    missing = [k for k in REQUIRED_KEYS if k not in task.data]
    if missing:
        raise ConfigError(f"task {task.id!r} is not an swe-bugfix task: data lacks {missing}")
    if task.data["kind"] not in TASK_KINDS:
        raise ConfigError(f"task {task.id!r} has unknown kind {task.data['kind']!r}; expected one of {TASK_KINDS}")
    if not task.data["f2p"] and task.data["kind"] != "perf":  # a perf task's tests all pass on the slow code
        raise ConfigError(f"task {task.id!r} has no fail-to-pass tests")
    if task.data["kind"] == "perf" and not isinstance(task.data.get("benchmark"), dict):
        raise ConfigError(f"perf task {task.id!r} has no benchmark in its data")
    return task.data


def mutation_of(task: Task) -> Mutation:
    return Mutation(**check_task(task)["mutation"])


def mutations_of(task: Task) -> list[Mutation]:
    """Every hunk of the task's module: one, or two for a merged task (`more_mutations`)."""
    data = check_task(task)
    return [Mutation(**data["mutation"]), *(Mutation(**m) for m in data.get("more_mutations", []))]


def apply_hunks(source: str, mutations: list[Mutation]) -> str:
    """Hunks made against the same original, applied bottom-up so each one's line numbers hold."""
    for m in sorted(mutations, key=lambda m: m.line_start, reverse=True):
        source = m.apply(source)
    return source


def original_files(task: Task) -> dict[str, str]:
    """The package's workspace files, bug-free, checked against the hash the task was made from."""
    data = check_task(task)
    package = package_by_dist(data["package"])
    if package.version != data["version"]:
        raise ConfigError(
            f"task {task.id!r} was generated from {data['package']}=={data['version']}, but this forgerl "
            f"pins {package.version}; regenerate the task set (python -m forgerl.envs.swe.build)"
        )
    files = dict(installed_sources(package))
    if sha256(files.get(data["module"], "")) != data["source_sha256"]:
        raise ConfigError(
            f"{data['module']} of the installed {data['package']} differs from the file task {task.id!r} was "
            f"generated from; reinstall {data['package']}=={data['version']}"
        )
    return files


def buggy_files(task: Task) -> dict[str, str]:
    files = original_files(task)
    module = task.data["module"]
    files[module] = apply_hunks(files[module], mutations_of(task))
    return files


def visible_tests(task: Task) -> dict[str, str]:
    """The pass-to-pass tests the agent may see and run (the fail-to-pass ones are hidden)."""
    data = check_task(task)
    return {data["test_file"]: select_tests(suite_text(data["suite"]), data["p2p"])}


def hidden_tests(task: Task) -> dict[str, str]:
    """The full suite (fail-to-pass + pass-to-pass), copied in only at scoring time."""
    data = check_task(task)
    return {data["test_file"]: suite_text(data["suite"])}


def agent_workspace(task: Task) -> dict[str, str]:
    """What the agent starts with: the buggy package, the visible tests, a pytest config."""
    return {**buggy_files(task), **visible_tests(task), "pytest.ini": PYTEST_INI}
