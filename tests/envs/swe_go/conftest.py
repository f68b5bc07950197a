"""A bug-fix task built on the spot (not read from data/swe_go) so the env and attack tests do not
depend on the shipped set: Comma of go-humanize loses the minus sign of negative numbers."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from forgerl.envs.base import Task
from forgerl.envs.swe_go import gosrc
from forgerl.envs.swe_go.gorun import run_go_tests
from forgerl.envs.swe_go.packages import package_by_path, package_sources, test_files
from forgerl.envs.swe_go.pipeline import ISSUE_TEST_FILE, apply_edits, make_task

HUMANIZE = "github.com/dustin/go-humanize"
needs_go = pytest.mark.skipif(
    shutil.which("go") is None or not Path("/usr/share/gocode/src", HUMANIZE).is_dir(),
    reason="needs golang-go and golang-github-dustin-go-humanize-dev (scripts/install_system_deps.sh)",
)


def comma_edit() -> gosrc.Edit:
    source = package_sources(HUMANIZE)["comma.go"]
    fn = next(f for f in gosrc.functions("comma.go", source) if f.name == "Comma")
    return next(e for e in gosrc.mutations("comma.go", source, fn) if e.operator == "remove_statement" and e.old == 'sign = "-"')


@pytest.fixture(scope="session")
def comma_tasks() -> dict[str, Task]:
    package = package_by_path(HUMANIZE)
    edit = comma_edit()
    calls = gosrc.test_calls(test_files(HUMANIZE))
    run = asyncio.run(run_go_tests(apply_edits(package_sources(HUMANIZE), [edit]), HUMANIZE, package.name, list(calls)))
    assert run.failing() == ["TestCommas"], run
    fn = next(f for f in gosrc.functions("comma.go", package_sources(HUMANIZE)["comma.go"]) if f.name == "Comma")
    issue = "Comma(-1000) gives 1,000: the minus sign is lost."
    gold_test = gosrc.standalone_test(test_files(HUMANIZE), ["TestCommas"])
    return {
        "bugfix": make_task("bugfix", package, [fn], [edit], ["TestCommas"], list(calls), issue, 0),
        "write_test": make_task("write_test", package, [fn], [edit], ["TestCommas"], list(calls), issue, 0,
                                {"test_file": ISSUE_TEST_FILE, "gold_test": gold_test}),
    }
