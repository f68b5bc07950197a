"""The sandboxed test runner: per-test outcomes, failure details for issue writing, timeouts, and
that the workspace copy of a package shadows the installed one."""

from __future__ import annotations

import asyncio

import pytest

from forgerl.envs.swe.verify import COLLECT, function_of_test, run_tests, select_tests, suite_header, suite_test_names
from forgerl.errors import ConfigError

SUITE = '''import mod


def helper(x):
    return x


def test_add__ok():
    assert mod.add(1, 2) == 3


def test_add__wrong():
    assert mod.add(2, 2) == 5


def test_add__raises():
    value = [1, 2]
    assert mod.add(value, None) == 3


def test_loop__hangs():
    while True:
        pass
'''
MOD = "def add(a, b):\n    return a + b\n"


def run(files, tests, **kw):
    return asyncio.run(run_tests(files, tests, **kw))


def test_runner_reports_each_outcome_with_details():
    result = run({"mod.py": MOD, "tests/test_s.py": SUITE}, ["tests/test_s.py"], per_test_timeout_s=1.0)
    assert result.problem is None
    outcomes = {name: r.outcome for name, r in result.results.items()}
    assert outcomes == {"test_add__ok": "passed", "test_add__wrong": "failed", "test_add__raises": "error",
                        "test_loop__hangs": "timeout"}
    wrong = result.results["test_add__wrong"].detail
    assert (wrong["call"], wrong["actual"], wrong["expected"]) == ("mod.add(2, 2)", "4", "5")
    raises = result.results["test_add__raises"].detail
    assert raises["call"] == "mod.add(value, None)" and raises["setup"] == "value = [1, 2]"
    assert raises["actual_raises"].startswith("TypeError")
    assert result.any_timeout and set(result.failing()) == {"test_add__wrong", "test_add__raises", "test_loop__hangs"}


def test_workspace_copy_shadows_the_installed_package():
    fake = 'def camelize(s, upper=True):\n    return "shadowed"\n'
    test = "import inflection\n\ndef test_camelize__x():\n    assert inflection.camelize('a_b') == 'AB'\n"
    result = run({"inflection/__init__.py": fake, "tests/test_x.py": test}, ["tests/test_x.py"])
    assert result.results["test_camelize__x"].detail["actual"] == "'shadowed'"


def test_import_error_is_a_collect_failure():
    result = run({"tests/test_x.py": "import no_such_module_here\n\ndef test_a__b():\n    pass\n"}, ["tests/test_x.py"])
    assert result.failing() == [COLLECT]


def test_run_tests_refuses_unknown_test_files():
    with pytest.raises(ConfigError, match="not among the files"):
        run({"a.py": ""}, ["tests/missing.py"])


def test_select_tests_keeps_header_and_named_tests():
    sliced = select_tests(SUITE, ["test_add__ok"])
    assert suite_test_names(sliced) == ["test_add__ok"]
    assert "import mod" in sliced and "def helper" in sliced
    with pytest.raises(ConfigError, match="not in the suite"):
        select_tests(SUITE, ["test_nope__x"])


def test_suite_header_keeps_only_what_the_snippet_uses():
    header = suite_header("import pytest\nimport mod\nfrom operator import add\n\ndef helper(x):\n    return x\n",
                          "mod.f(helper(1))")
    assert header.splitlines()[0] == "import mod" and "def helper" in header
    assert "pytest" not in header and "operator" not in header


def test_function_of_test_naming_convention():
    assert function_of_test("test_camelize__lower_first") == "camelize"
    assert function_of_test("test_nth_or_last__values") == "nth_or_last"
    with pytest.raises(ConfigError, match="convention"):
        function_of_test("test_camelize")


def test_failure_details_are_reproducible_across_runs():
    test = ("def test_x__addr():\n    assert object() == 1\n\n"
            "def test_x__set():\n    assert set('abcdefgh') == 1\n")
    runs = [run({"tests/test_x.py": test}, ["tests/test_x.py"]) for _ in range(2)]
    assert runs[0].results["test_x__addr"].detail["actual"] == "<object object>"
    assert runs[0].results["test_x__set"].detail == runs[1].results["test_x__set"].detail


def test_memory_runaway_counts_as_timeout():
    test = "def test_x__grow():\n    hog = []\n    while True:\n        hog.append(bytearray(10**7))\n"
    result = run({"tests/test_x.py": test}, ["tests/test_x.py"], per_test_timeout_s=20.0)
    assert result.any_timeout
    assert result.problem or "MemoryError" in result.results["test_x__grow"].message
