"""Rebuilding a swe-js task's files from the installed package: the original, the changed copy
(bug, stub or slowdown), the visible tests. A task stores only its hunks and each changed file's
hash, so a reinstalled package at another version is refused by name."""

from __future__ import annotations

from typing import Any

from forgerl.envs.base import Task
from forgerl.envs.swe.tasktypes import check_kind
from forgerl.envs.swe_js.issue import VISIBLE_TEST, test_file
from forgerl.envs.swe_js.mutate import Injected, apply_all
from forgerl.envs.swe_js.packages import installed_sources, load_suite, package_by_name, package_dir, sha256
from forgerl.errors import ConfigError

REQUIRED_KEYS = ("kind", "language", "package", "version", "module", "function", "mutations", "source_sha256",
                 "f2p", "p2p", "issue")  # fmt: skip


def check_task(task: Task) -> dict[str, Any]:
    data = task.data
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ConfigError(f"task {task.id!r} is not a swe-js task: data lacks {missing}")
    check_kind(data["kind"])
    if data["kind"] != "perf" and not data["f2p"]:
        raise ConfigError(f"task {task.id!r} has no fail-to-pass tests")
    if data["kind"] == "perf" and "perf" not in data:
        raise ConfigError(f"perf task {task.id!r} lacks its benchmark settings (data.perf)")
    return data


def injected_of(task: Task) -> list[Injected]:
    return [Injected.from_dict(m) for m in check_task(task)["mutations"]]


def original_files(task: Task) -> dict[str, str]:
    data = check_task(task)
    package = package_by_name(data["package"])
    if package.version != data["version"]:
        raise ConfigError(f"task {task.id!r} was generated from {package.name}@{data['version']}, but this forgerl pins "
                          f"{package.version}; regenerate the tasks (python -m forgerl.envs.swe_js.build --out data/swe_js)")
    files = dict(installed_sources(package.name))
    for module, digest in data["source_sha256"].items():
        if sha256(files.get(module, "")) != digest:
            raise ConfigError(f"{module} of the installed {package.name} differs from the file task {task.id!r} was "
                              f"generated from; reinstall {package.name}@{package.version}")
    return files


def changed_files(task: Task) -> dict[str, str]:
    """The package as the agent receives it: with the bug(s), the stub or the slowdown."""
    return apply_all(original_files(task), injected_of(task))


def visible_tests(task: Task) -> dict[str, str]:
    data = check_task(task)
    suite = load_suite(data["package"])
    return {VISIBLE_TEST: test_file(suite.prelude, suite.select(data["p2p"]))}


def agent_workspace(task: Task) -> dict[str, str]:
    data = check_task(task)
    manifest = (package_dir(package_by_name(data["package"])) / "package.json").read_text(encoding="utf-8")
    return {**changed_files(task), "package.json": manifest, **visible_tests(task)}
