"""The pipeline on one small real package (inflection): kept mutants really are caught by their
fail-to-pass tests only, rejections carry the right reason, output is deterministic by seed."""

from __future__ import annotations

import asyncio

import pytest

from forgerl.envs.swe.packages import INFLECTION, TARGETS, installed_sources
from forgerl.envs.swe.pipeline import GenerationConfig, build_report, generate, report_markdown
from forgerl.envs.swe.verify import function_of_test, run_tests
from forgerl.envs.swe.workspace import buggy_files, hidden_tests

TARGET = next(t for t in TARGETS if t.package is INFLECTION)
CONFIG = GenerationConfig(
    seed=3, targets=(TARGET,), only_functions=frozenset({"camelize", "parameterize", "ordinal"}),
    keep_per_function=2, max_tries_per_function=4,
)  # fmt: skip


@pytest.fixture(scope="module")
def generated():
    return asyncio.run(generate(CONFIG))


def test_kept_mutants_have_localised_fail_to_pass_tests(generated):
    bugfix = [t for t in generated.tasks if t.data["kind"] == "bugfix"]
    assert bugfix, "inflection's camelize and parameterize should yield bugs"
    for task in bugfix:
        d = task.data
        assert d["f2p"] and all(function_of_test(n) == d["function"] for n in d["f2p"])
        assert not set(d["f2p"]) & set(d["p2p"])
        buggy_line = [ln for ln in d["mutation"]["buggy"].splitlines() if ln not in d["mutation"]["original"].splitlines()]
        assert all(ln.strip() not in d["issue"] for ln in buggy_line if ln.strip())  # no diff leaks
        assert d["issue"] in task.prompt


def test_a_kept_mutant_reproduces_independently(generated):
    task = next(t for t in generated.tasks if t.data["kind"] == "bugfix")
    files = {**buggy_files(task), **hidden_tests(task)}
    run = asyncio.run(run_tests(files, [task.data["test_file"]]))
    assert sorted(run.failing()) == task.data["f2p"]
    clean = asyncio.run(run_tests({**installed_sources(INFLECTION), **hidden_tests(task)}, [task.data["test_file"]]))
    assert clean.failing() == []


def test_rejections_say_why(generated):
    ordinal = [a for a in generated.attempts if a.function == "ordinal"]
    # ordinalize() calls ordinal(): most ordinal bugs also break ordinalize's tests
    assert any(a.reason == "breaks pass-to-pass" and "test_ordinalize__numbers" in a.failing_tests for a in ordinal)
    assert all(a.reason for a in generated.attempts if a.status == "rejected")


def test_report_counts_add_up(generated):
    report = build_report(generated, CONFIG)
    totals = report["totals"]
    assert totals["kept"] + sum(totals["rejected"].values()) == totals["mutants_tried"] == len(generated.attempts)
    assert totals["bugfix_tasks"] + totals["write_test_tasks"] == 2 * totals["kept"]
    assert totals["tasks"] == len(generated.tasks) == 2 * totals["kept"] + sum(
        totals[f"{kind}_tasks"] for kind in CONFIG.extra_kinds)
    assert report["kinds"]["feature"]["tasks"] == totals["feature_tasks"] > 0  # the new kinds report too
    assert "# Kind: merged" in report_markdown(report)
    assert sum(sum(c.values()) for c in report["by_operator"].values()) == totals["mutants_tried"]
    md = report_markdown(report)
    assert "## By operator" in md and "inflection==0.5.1" in md


def test_deterministic_by_seed(generated):
    again = asyncio.run(generate(CONFIG))
    assert [t.model_dump() for t in again.tasks] == [t.model_dump() for t in generated.tasks]
