"""Perf tasks' hidden benchmark, timed by the host (M2_NOTES §5: performance tasks need the
pass-to-pass tests *and* a stable speed-up over the slow version).

A benchmark is a few calls of the slowed function on large inputs (`BENCHMARKS`, written per
function so the slow version takes about a second and the original a small fraction of it). It runs
through the judge's worker (judge.py): the sandboxed process evaluates each call and reports only
`_digest(result)`; the host compares the digests with the ones the original produced at generation,
so a fast wrong answer fails. The time is the host's wall clock around the sandboxed process, in a
fresh sandbox per run (no cache survives between runs), alternating the slow version and the
candidate (`PerfRule.repeats` pairs): nothing the candidate's code does to `time`, or prints, enters
the measurement.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from forgerl.envs.sandbox import Limits
from forgerl.envs.swe._sandbox import new_sandbox
from forgerl.envs.swe.judge import MAX_OUTPUT_BYTES, WORKER_NAME, WORKER_SOURCE, plan_suite, read_report
from forgerl.envs.swe.tasktypes import PerfMeasurement, PerfRule
from forgerl.errors import VerifierError

BENCH_WALL_S = 60.0
BENCH_STEP_TIMEOUT_S = 30.0
DIGEST_HELPER = (
    "import hashlib\n\n\n"
    "def _digest(value):\n"
    "    return hashlib.sha256(repr(value).encode('utf-8')).hexdigest()\n"
)


@dataclass(frozen=True)
class Bench:
    """How to exercise one function at a size where a lost factor of n shows: `setup` imports
    (and builds inputs), `calls` are expressions whose values are compared with the original's."""

    setup: str
    calls: tuple[str, ...]


def _b(setup: str, *calls: str) -> Bench:
    return Bench(setup, calls)


BENCHMARKS: dict[tuple[str, str], Bench] = {
    ("toolz/itertoolz.py", "unique"): _b("from toolz.itertoolz import unique", "list(unique([i % 6000 for i in range(12000)]))"),
    ("toolz/itertoolz.py", "isdistinct"): _b("from toolz.itertoolz import isdistinct", "isdistinct(iter(range(13000)))"),
    ("toolz/itertoolz.py", "reduceby"): _b("from toolz.itertoolz import reduceby",
                                           "reduceby(lambda x: x % 3000, lambda a, b: a + b, range(30000), 0)"),
    ("more_itertools/more.py", "split_at"): _b("from more_itertools import split_at",
                                               "list(split_at(range(25000), lambda x: x == -1))"),
    ("more_itertools/more.py", "split_before"): _b("from more_itertools import split_before",
                                                   "list(split_before(range(25000), lambda x: x == 0))"),
    ("more_itertools/more.py", "split_after"): _b("from more_itertools import split_after",
                                                  "list(split_after(range(25000), lambda x: x == -1))"),
    ("more_itertools/more.py", "split_when"): _b("from more_itertools import split_when",
                                                 "list(split_when(range(40000), lambda a, b: a > b))"),
    ("more_itertools/more.py", "all_unique"): _b("from more_itertools import all_unique", "all_unique(range(14000))"),
    ("more_itertools/more.py", "duplicates_everseen"): _b("from more_itertools import duplicates_everseen",
                                                          "list(duplicates_everseen([i % 8000 for i in range(16000)]))"),
    ("more_itertools/more.py", "classify_unique"): _b("from more_itertools import classify_unique",
                                                      "list(classify_unique([i % 8000 for i in range(16000)]))"),
    ("more_itertools/more.py", "constrained_batches"): _b("from more_itertools import constrained_batches",
                                                          "list(constrained_batches(['ab'] * 32000, 10 ** 9))"),
    ("more_itertools/recipes.py", "_windowed_running_mean"): _b("from more_itertools import running_mean",
                                                                "sum(running_mean(range(150000), maxlen=50000))"),
    ("more_itertools/recipes.py", "_windowed_running_min"): _b("from more_itertools import running_min",
                                                               "sum(running_min(range(120000), maxlen=60000))"),
    ("more_itertools/recipes.py", "_windowed_running_max"): _b("from more_itertools import running_max",
                                                               "sum(running_max(range(120000, 0, -1), maxlen=60000))"),
    ("boltons/strutils.py", "format_int_list"): _b("from boltons.strutils import format_int_list",
                                                   "format_int_list(list(range(0, 50000, 2)))",
                                                   "format_int_list(list(range(30000)))"),
    ("boltons/strutils.py", "int_ranges_from_int_list"): _b(
        "from boltons.strutils import int_ranges_from_int_list",
        "int_ranges_from_int_list(','.join(str(i) for i in range(0, 50000, 2)))"),
    ("boltons/strutils.py", "args2sh"): _b("from boltons.strutils import args2sh", "args2sh(['a b'] * 25000)"),
    ("boltons/strutils.py", "args2cmd"): _b("from boltons.strutils import args2cmd",
                                            "args2cmd(['a b'] * 10000)"),
    ("boltons/strutils.py", "unwrap_text"): _b("from boltons.strutils import unwrap_text",
                                               "len(unwrap_text('word\\n' * 25000))"),
    ("boltons/iterutils.py", "split_iter"): _b("from boltons.iterutils import split",
                                               "split(list(range(25000)), sep=None)",
                                               "len(split(list(range(20000)), sep=list(range(-1, -2500, -1))))"),
    ("boltons/iterutils.py", "unique_iter"): _b("from boltons.iterutils import unique", "unique(list(range(9000)) * 2)"),
    ("boltons/iterutils.py", "redundant"): _b("from boltons.iterutils import redundant",
                                              "redundant(list(range(8000)) * 2)"),
}
"""(module, function slowed) -> the benchmark. The function slowed may be a helper of the one the
benchmark calls (boltons' `unique` calls `unique_iter`); the suite's tests must still all pass."""


def benchmark_source(bench: Bench, digests: list[str] | None = None) -> str:
    """The benchmark as a hidden test file for the judge: one test per call, asserting its digest
    (placeholders before the original's digests are known)."""
    lines = [bench.setup, DIGEST_HELPER]
    for i, call in enumerate(bench.calls):
        expected = repr(digests[i]) if digests else "None"
        lines.append(f"\ndef test_bench_{i}():\n    assert _digest({call}) == {expected}\n")
    return "\n".join(lines)


@dataclass(frozen=True)
class BenchRun:
    values: tuple[Any, ...]  # each call's digest as reported, or None where the call raised or timed out
    elapsed_s: float
    problem: str | None = None
    tampering: tuple[str, ...] = ()


async def run_benchmark(files: dict[str, str], source: str, *, wall_s: float = BENCH_WALL_S) -> BenchRun:
    """One timed run of the benchmark against `files` in a fresh sandbox. The clock is the host's,
    around the sandboxed process only (sandbox set-up and teardown are outside it)."""
    plan = plan_suite(source)
    limits = Limits(wall_s=wall_s, cpu_s=wall_s, memory_mb=1024, max_output_bytes=MAX_OUTPUT_BYTES)
    sandbox = new_sandbox({**files, WORKER_NAME: WORKER_SOURCE}, wall_s)
    try:
        argv = ["env", "PYTHONHASHSEED=0", sys.executable, WORKER_NAME, f"--timeout={BENCH_STEP_TIMEOUT_S}"]
        started = time.perf_counter()
        res = await sandbox.run(argv, stdin=plan.worker_input(), limits=limits)
        elapsed = time.perf_counter() - started
    finally:
        await sandbox.close()
    if res.timed_out:
        return BenchRun((), elapsed, problem=f"the benchmark took longer than {wall_s} s")
    report = read_report(res.stdout, plan)
    values = tuple(report.steps.get((t, 0), {}).get("value") for t in range(len(plan.tests)))
    problem = None if report.done else f"the benchmark stopped early (exit code {res.exit_code}): {res.stderr[-300:]}"
    if report.header_error is not None:
        problem = f"the benchmark's setup failed: {report.header_error}"
    return BenchRun(values, elapsed, problem, tuple(report.tampering))


@dataclass(frozen=True)
class Timed:
    """An interleaved measurement, and whether every candidate run gave the expected results."""

    measurement: PerfMeasurement
    correct: bool
    problems: tuple[str, ...]


async def measure(slow: dict[str, str], candidate: dict[str, str], source: str, expected: list[str],
                  rule: PerfRule) -> Timed:
    """`rule.repeats` pairs of runs, slow then candidate, alternating so load drifts hit both alike.
    A wrong candidate result ends the measurement: it fails whatever its speed (and a candidate
    that hangs on the large input costs one run, not `repeats`)."""
    slow_s: list[float] = []
    cand_s: list[float] = []
    for _ in range(rule.repeats):
        for files, series, is_candidate in ((slow, slow_s, False), (candidate, cand_s, True)):
            run = await run_benchmark(files, source)
            series.append(max(run.elapsed_s, 1e-6))
            if run.problem is None and not run.tampering and list(run.values) == expected:
                continue
            if not is_candidate:  # the slow version is the task's own code: it must reproduce
                raise VerifierError(f"the slow version's benchmark misbehaved: {_why(run, expected, False)}")
            return Timed(PerfMeasurement(tuple(slow_s), tuple(cand_s)), False, (_why(run, expected, True),))
    return Timed(PerfMeasurement(tuple(slow_s), tuple(cand_s)), True, ())


def _why(run: BenchRun, expected: list[str], candidate: bool) -> str:
    who = "the candidate" if candidate else "the slow version"
    if run.problem:
        return f"{who}: {run.problem}"
    if run.tampering:
        return f"{who}: tampering with the result channel: {run.tampering[0]}"
    wrong = sum(1 for got, want in zip(run.values, expected, strict=False) if got != want)
    return f"{who}: {wrong or len(expected)} of {len(expected)} benchmark results differ from the original's"
