"""The feature, perf and merged task kinds of swe-bugfix: the transforms keep behaviour, acceptance
rules hold, generation is deterministic, gold scores 1 and no-op 0, and the perf verifier times
on the host so nothing the candidate does in its own process can fake a speed-up."""

from __future__ import annotations

import asyncio
import random

import pytest

from forgerl.envs.base import run_gold
from forgerl.envs.suites import is_held_out
from forgerl.envs.swe import SweEnv, load_swe_tasks, split_key
from forgerl.envs.swe.kinds import feature_tasks, merged_tasks, pair_bugs, stub_candidate
from forgerl.envs.swe.mutate import Mutation, Source, mutate_source
from forgerl.envs.swe.packages import TARGETS, installed_sources, suite_text
from forgerl.envs.swe.perf import Bench, benchmark_source, measure, run_benchmark
from forgerl.envs.swe.pipeline import FAMILY
from forgerl.envs.swe.slowdown import slowdowns_for_function
from forgerl.envs.swe.tasktypes import CHECKS, PerfRule
from forgerl.envs.swe.verify import function_of_test, run_tests
from forgerl.envs.swe.workspace import apply_hunks, buggy_files, original_files
from forgerl.types import ToolCall, Trajectory

TOOLZ = next(t for t in TARGETS if t.module == "toolz/itertoolz.py")

SAMPLE = '''
from collections import deque
from functools import lru_cache


def uniq(seq):
    seen = set()
    seen_add = seen.add
    out = []
    for x in seq:
        if x not in seen:
            seen_add(x)
            out.append(x)
    return out


def drain(items):
    queue = deque(items)
    out = []
    while queue:
        out.append(queue.popleft())
    return out


def ranks(xs):
    order = sorted(xs)
    return [order.index(x) for x in xs]


def counts(xs):
    d = {}
    for x in xs:
        if x in d:
            d[x] += 1
        else:
            d[x] = 1
    return d


def rescan(xs):
    total = sum(xs)
    out = []
    for x in xs:
        out.append(x * 100 // total)
    return out


@lru_cache
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
'''


def _run(source: str, expr: str):
    scope: dict = {}
    exec(compile(source, "<sample>", "exec"), scope)  # noqa: S102 - test's own sample code
    return eval(expr, scope)  # noqa: S307


@pytest.mark.parametrize("function, call, operators", [
    ("uniq", "uniq([3, 1, 3, 2, 1])", {"set_to_list", "membership_in_list", "append_to_concat"}),
    ("drain", "drain([1, 2, 3])", {"deque_to_list", "append_to_concat"}),
    ("counts", "counts('abca')", {"membership_in_list"}),
    ("rescan", "rescan([1, 2, 3])", {"recompute_in_loop", "append_to_concat"}),
    ("fib", "fib(20)", {"drop_cache"}),
])  # fmt: skip
def test_slowdowns_keep_results(function, call, operators):
    src = Source(SAMPLE)
    candidates = slowdowns_for_function(src, function)
    assert {c.operator for c in candidates} == operators
    for candidate in candidates:
        _, slow = mutate_source(SAMPLE, function, candidate)
        assert slow != SAMPLE
        assert _run(slow, call) == _run(SAMPLE, call), candidate


def test_a_slowdown_is_slower_asymptotically():
    candidate = next(c for c in slowdowns_for_function(Source(SAMPLE), "uniq") if c.operator == "set_to_list")
    _, slow = mutate_source(SAMPLE, "uniq", candidate)
    assert "seen = []" in slow and "seen.append" in slow and "set()" not in slow.split("def drain")[0]


def test_stub_keeps_signature_and_docstring_and_raises():
    source = 'def f(a, b=2):\n    """Add."""\n    c = a + b\n    return c\n\n\ndef g():\n    return f(1)\n'
    candidate = stub_candidate(Source(source), "f")
    assert candidate is not None
    _, stubbed = mutate_source(source, "f", candidate)
    assert 'def f(a, b=2):\n    """Add."""\n    raise NotImplementedError' in stubbed
    with pytest.raises(NotImplementedError):
        _run(stubbed, "f(1)")
    assert stub_candidate(Source("def h(): return 1\n"), "h") is None  # a one-line body: nothing to stub


def test_two_hunks_apply_bottom_up_whatever_their_order():
    source = "".join(f"line {i}\n" for i in range(1, 11))
    top = Mutation("x", "a", 2, "line 2\nline 3\n", "line 2\nextra\nline 3 changed\n", "")
    bottom = Mutation("x", "b", 7, "line 7\nline 8\n", "line 8\n", "")
    merged = apply_hunks(source, [top, bottom])
    assert merged == apply_hunks(source, [bottom, top])
    assert "extra\nline 3 changed\n" in merged and "line 7\n" not in merged and merged.count("line 8") == 1


@pytest.fixture(scope="module")
def toolz_features():
    files, suite = installed_sources(TOOLZ.package), suite_text(TOOLZ.suite)
    functions = ["take", "nth", "frequencies", "isiterable", "get"]
    return asyncio.run(feature_tasks(TOOLZ, files, suite, functions, seed=0, keep=5, wall_s=60.0))


def test_feature_acceptance_and_determinism(toolz_features):
    tasks, attempts = toolz_features
    assert tasks, "some of toolz's take/nth/frequencies/... should stub cleanly"
    files, suite = installed_sources(TOOLZ.package), suite_text(TOOLZ.suite)
    for task in tasks:
        data = task.data
        assert data["kind"] == "feature" and data["f2p"] and set(data["f2p"]).isdisjoint(data["p2p"])
        assert {function_of_test(n) for n in data["f2p"]} == {data["function"]}
        run = asyncio.run(run_tests({**buggy_files(task), data["test_file"]: suite}, [data["test_file"]], wall_s=60))
        assert sorted(run.failing()) == data["f2p"]  # f2p fail on the stub, p2p pass
        assert "NotImplementedError" in data["issue"] and data["function"] in data["issue"]
    again = asyncio.run(feature_tasks(TOOLZ, files, suite, ["take", "nth", "frequencies", "isiterable", "get"],
                                      seed=0, keep=5, wall_s=60.0))
    assert [t.model_dump() for t in again[0]] == [t.model_dump() for t in tasks]


def test_a_stub_that_breaks_other_functions_is_rejected():
    target = next(t for t in TARGETS if t.module == "boltons/iterutils.py")
    files, suite = installed_sources(target.package), suite_text(target.suite)
    # boltons' bucketize and partition check their input with is_iterable
    tasks, attempts = asyncio.run(feature_tasks(target, files, suite, ["is_iterable"], seed=0, keep=1, wall_s=60.0))
    assert not tasks and [a.reason for a in attempts] == ["breaks pass-to-pass"]


def test_merged_pairs_are_seeded_distinct_and_on_one_side():
    bugs = [t for t in load_swe_tasks("bugfix") if t.data["module"] == TOOLZ.module]
    pairs = pair_bugs(bugs, 0, TOOLZ.module, 6)
    assert pairs == pair_bugs(bugs, 0, TOOLZ.module, 6)
    used = [t.id for pair in pairs for t in pair]
    assert len(used) == len(set(used))
    for a, b in pairs:
        assert a.data["function"] != b.data["function"]
        assert is_held_out(split_key(a), salt=FAMILY) == is_held_out(split_key(b), salt=FAMILY)


def test_merged_acceptance_needs_both_bugs_caught():
    bugs = [t for t in load_swe_tasks("bugfix") if t.data["module"] == TOOLZ.module]
    files, suite = installed_sources(TOOLZ.package), suite_text(TOOLZ.suite)
    tasks, attempts = asyncio.run(merged_tasks(TOOLZ, files, suite, bugs, seed=0, keep=2, wall_s=60.0))
    assert tasks and len(attempts) >= len(tasks)
    for task in tasks:
        first, second = (next(b for b in bugs if b.id == i) for i in task.data["merged_from"])
        assert task.data["f2p"] == sorted(set(first.data["f2p"]) | set(second.data["f2p"]))
        buggy = buggy_files(task)[TOOLZ.module]
        assert Mutation(**first.data["mutation"]).buggy in buggy and Mutation(**second.data["mutation"]).buggy in buggy
        assert f"`{first.data['function']}`" in task.data["issue"] and f"`{second.data['function']}`" in task.data["issue"]


# --- the shipped set -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["feature", "perf", "merged"])
def test_shipped_kind_has_enough_tasks_from_enough_packages(kind):
    tasks = load_swe_tasks(kind)
    assert len(tasks) >= 20
    assert len({t.data["package"] for t in tasks}) >= 3
    for task in tasks:
        assert task.data["language"] == "python" and task.data["issue"] in task.prompt


def test_perf_issues_describe_the_symptom_not_the_fix():
    for task in load_swe_tasks("perf"):
        mutation = task.data["mutation"]
        original = set(mutation["original"].splitlines())
        changed = [ln.strip() for ln in mutation["buggy"].splitlines() if ln not in original and ln.strip()]
        assert not any(line in task.data["issue"] for line in changed), task.id
        assert "slow" in task.data["issue"].lower()
        assert not any(d in task.prompt for d in task.data["benchmark"]["digests"])


def _episode(task, rounds: list[list[ToolCall]]):
    async def go():
        async with SweEnv() as env:
            env.reset(task)
            for calls in rounds:
                for c in calls:
                    await env.execute(c)
            return env.verify(Trajectory(task_id=task.id))

    return asyncio.run(go())


def _gold(task) -> float:
    async def go():
        async with SweEnv() as env:
            _, result = await run_gold(env, task)
            return result.score

    return asyncio.run(go())


@pytest.mark.parametrize("kind", ["feature", "merged"])
def test_gold_one_noop_zero_and_breakdown_names_the_checks(kind):
    task = random.Random(0).choice(load_swe_tasks(kind))
    assert _gold(task) == 1.0
    verdict = _episode(task, [[ToolCall(name="submit")]])
    assert verdict.outcome == 0.0
    assert set(verdict.parts) == {"submitted", *CHECKS[kind], "tampered"}
    assert verdict.parts["f2p_passed"] == 0.0 and verdict.evidence["kind"] == kind


# --- perf: the host measures ------------------------------------------------------------------


def _perf_task():
    return next(t for t in load_swe_tasks("perf") if t.data["function"] == "split_at")


def _write_module(task, content: str) -> list[ToolCall]:
    return [ToolCall(name="write_file", arguments={"path": task.data["module"], "content": content}),
            ToolCall(name="submit")]  # fmt: skip


def test_perf_measure_catches_a_fast_wrong_answer_and_a_slow_copy():
    files = installed_sources(TOOLZ.package)
    bench = Bench("from toolz.itertoolz import frequencies", ("frequencies([i % 7 for i in range(3000)])",))
    digests = [str(v) for v in asyncio.run(run_benchmark(files, benchmark_source(bench))).values]
    source = benchmark_source(bench, digests)
    wrong = files[TOOLZ.module].replace("    return dict(d)\n", "    return {}\n", 1)
    assert wrong != files[TOOLZ.module]
    timed = asyncio.run(measure(files, {**files, TOOLZ.module: wrong}, source, digests, PerfRule(repeats=3)))
    assert not timed.correct and "differ" in timed.problems[0]
    same = asyncio.run(measure(files, files, source, digests, PerfRule(repeats=3)))
    assert same.correct and not same.measurement.passes(PerfRule())  # no speed-up over itself


@pytest.mark.slow
def test_perf_gold_one_noop_zero():
    task = _perf_task()
    assert _gold(task) == 1.0
    verdict = _episode(task, [[ToolCall(name="submit")]])
    assert verdict.outcome == 0.0 and verdict.parts["p2p_passed"] == 1.0 and verdict.parts["speedup_ok"] == 0.0
    assert set(verdict.parts) == {"submitted", "p2p_passed", "speedup_ok", "tampered"}
    assert "noise" in verdict.evidence["perf"]


@pytest.mark.slow
def test_perf_a_candidate_that_fakes_its_clock_or_prints_timings_cannot_pass():
    task = _perf_task()
    slow = buggy_files(task)[task.data["module"]]
    forged = ("import time as _t, sys as _s\n_t.perf_counter = lambda: 0.0\n_t.time = lambda: 0.0\n"
              "_t.monotonic = lambda: 0.0\nprint('benchmark: 0.001 s, speedup 100x')\n"
              "_s.stderr.write('speedup 100x\\n')\n") + slow  # fmt: skip
    verdict = _episode(task, [_write_module(task, forged)])
    assert verdict.outcome == 0.0 and verdict.parts["speedup_ok"] == 0.0


@pytest.mark.slow
def test_perf_a_fast_wrong_candidate_fails():
    task = _perf_task()
    fixed = original_files(task)[task.data["module"]]
    wrong = fixed.replace("def split_at(", "def _real_split_at(", 1) + (
        "\n\ndef split_at(iterable, pred, maxsplit=-1, keep_separator=False):\n"
        "    items = list(iterable)\n"
        "    if len(items) > 1000:\n"
        "        return iter([items[:10]])\n"
        "    return _real_split_at(items, pred, maxsplit, keep_separator)\n"
    )
    verdict = _episode(task, [_write_module(task, wrong)])
    assert verdict.outcome == 0.0 and verdict.parts["speedup_ok"] == 0.0
    assert verdict.evidence["results_match"] is False


@pytest.mark.slow
def test_perf_gold_clears_the_rule_in_repeated_validations():
    """Every shipped perf task's gold, validated 3 times: the speed-up must show in >= 95% of them
    (the issue's bar). Prints the figures for the report."""
    tasks = load_swe_tasks("perf")
    scores = [_gold(task) for _ in range(3) for task in tasks]
    rate = sum(scores) / len(scores)
    print(f"perf gold cleared the rule in {int(sum(scores))} of {len(scores)} validations ({rate:.1%})")
    assert rate >= 0.95
