"""Feature, perf and merged tasks, made from the same packages and suites as the bug fixes
(M2_NOTES §5: every task type gets its own reward; tasktypes.py names each type's checks).

  * feature: a function's body is replaced by `raise NotImplementedError(...)` (docstring and
    signature kept); kept when the function's own tests fail on the stub and every other test
    passes. The issue is a feature request written from the docstring and two of the hidden
    tests' examples; f2p = the function's tests that failed, p2p = the rest.
  * perf: a slowdown (slowdown.py) in a function with a benchmark (perf.py); kept when every test
    still passes, the benchmark's results are unchanged, and the original beats the slow version by
    `min_speedup * generation_margin` in an interleaved measurement. p2p = the whole suite.
  * merged: two kept bug-fix mutants of different functions of one module, on the same side of the
    train/held-out split, applied together; kept when the failing tests are exactly the union of
    both bugs' fail-to-pass tests (the bugs do not mask or feed each other).
Every step is seeded; only the perf acceptance reads a clock, and its margin keeps it far from
the line (timings go to a side file, not the task data, so the task file rebuilds byte for byte).
"""

from __future__ import annotations

import ast
import random
from dataclasses import dataclass, field
from typing import Any

from forgerl.envs.base import Task
from forgerl.envs.suites import is_held_out
from forgerl.envs.swe.mutate import Candidate, Mutation, Source, TextEdit, find_function, to_mutation
from forgerl.envs.swe.packages import TargetModule, sha256
from forgerl.envs.swe.perf import BENCHMARKS, Timed, benchmark_source, measure, run_benchmark
from forgerl.envs.swe.slowdown import slowdowns_for_function
from forgerl.envs.swe.tasktypes import PerfRule, measure_until_clear
from forgerl.envs.swe.verify import CaseResult, SuiteRun, run_tests, suite_header, suite_test_names
from forgerl.envs.swe.workspace import apply_hunks
from forgerl.errors import VerifierError

STUB = 'raise NotImplementedError("{name} is not implemented yet")'
PERF_TRIES_PER_FUNCTION = 3  # each try is timed (about ten benchmark runs): bounds the generation time


@dataclass
class KindAttempt:
    """One row of a kind's report: what was tried and what became of it."""

    kind: str
    module: str
    function: str
    operator: str
    status: str  # "kept" or "rejected"
    reason: str = ""


@dataclass
class KindResult:
    tasks: list[Task] = field(default_factory=list)
    attempts: list[KindAttempt] = field(default_factory=list)
    perf_timings: dict[str, dict[str, Any]] = field(default_factory=dict)


def base_data(target: TargetModule, function: str, original: str, mutation: Mutation) -> dict[str, Any]:
    package = target.package
    return {
        "package": package.dist, "version": package.version, "import_name": package.import_name,
        "module": target.module, "source_sha256": sha256(original), "function": function,
        "operator": mutation.operator, "mutation": mutation.to_dict(), "suite": target.suite,
        "test_file": f"tests/{target.suite}", "language": "python",
    }  # fmt: skip


def _failures_outside(run: SuiteRun, allowed: set[str]) -> bool:
    return any(name not in allowed for name in run.failing())


# --- feature ---------------------------------------------------------------------------------


def stub_candidate(src: Source, qualname: str) -> Candidate | None:
    """The function's body (after its docstring) as one `raise NotImplementedError` line; None
    for a one-line function or one whose body starts on the `def` line."""
    fn = find_function(src.tree, qualname)
    body = fn.body[1:] if _has_docstring(fn) else fn.body
    if not body or body[0].lineno <= fn.lineno:
        return None
    indent = " " * body[0].col_offset
    start, end = src.line_span(body[0].lineno, fn.end_lineno)  # type: ignore[arg-type]
    text = f"{indent}{STUB.format(name=qualname)}\n"
    return Candidate("feature_stub", (TextEdit(start, end, text),), f"stub out {qualname}")


def _has_docstring(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    first = fn.body[0]
    return isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)


def feature_issue(src: Source, qualname: str, module_key: str, failures: list[CaseResult], suite: str,
                  rng: random.Random) -> str:
    """A feature request: the signature, the docstring's first paragraph, and two examples taken
    from the hidden tests (the rest of their expected values stay hidden)."""
    fn = find_function(src.tree, qualname)
    header = "".join(src.lines[fn.lineno - 1 : fn.body[0].lineno - 1]).strip() or f"def {qualname}(...):"
    doc = (ast.get_docstring(fn) or "").split("\n\n")[0].strip()
    examples = [f for f in failures if "expected" in f.detail and f.detail.get("call")]
    if not examples:
        raise ValueError(f"no test of {qualname} shows an expected value to quote")
    shown = sorted(rng.sample(examples, min(2, len(examples))), key=lambda f: f.name)
    calls = "\n".join(f"{f.detail.get('setup') or ''}\n{f.detail['call']}" for f in shown)
    imports = suite_header(suite, calls).strip()
    parts = [
        f"# Feature request: implement `{qualname}`",
        rng.choice((f"`{module_key}.{qualname}` is declared but calling it raises `NotImplementedError`.",
                    f"`{qualname}` in `{module_key}` exists only as a stub (it raises `NotImplementedError`).")),
        f"Its signature:\n```python\n{header}\n```",
        f"What it should do, from its documentation:\n\n> {doc.replace(chr(10), chr(10) + '> ')}" if doc else "",
        "For example" + (" (with `" + imports.replace(chr(10), "; ") + "`):" if imports else ":"),
        *(f"```python\n{((f.detail.get('setup') or '') + chr(10) + f.detail['call']).strip()}\n```\n"
          f"should return `{f.detail['expected']}`." for f in shown),
        "Please implement it so it behaves as documented; the rest of the module should keep working as it does.",
    ]
    return "\n\n".join(p for p in parts if p).strip() + "\n"


async def feature_tasks(target: TargetModule, files: dict[str, str], suite: str, functions: list[str],
                        seed: int, keep: int, wall_s: float) -> tuple[list[Task], list[KindAttempt]]:
    original = files[target.module]
    src = Source(original)
    order = list(functions)
    random.Random(f"{seed}:{target.module}:feature").shuffle(order)
    tasks: list[Task] = []
    attempts: list[KindAttempt] = []
    for function in order:
        if len(tasks) >= keep:
            break
        row = {"kind": "feature", "module": target.module, "function": function, "operator": "feature_stub"}
        try:
            candidate = stub_candidate(src, function)
        except Exception:  # a `Class_method` test name, or a name the module binds another way
            candidate = None
        if candidate is None:
            attempts.append(KindAttempt(**row, status="rejected", reason="not a stubbable function"))
            continue
        mutation = to_mutation(src, function, candidate)
        run = await run_tests({**files, target.module: mutation.apply(original), f"tests/{target.suite}": suite},
                              [f"tests/{target.suite}"], wall_s=wall_s)
        own = {n for n in suite_test_names(suite) if n.startswith(f"test_{function}__")}
        failing = sorted(run.failing())
        reason = ("timeout" if run.any_timeout or run.problem else "no test fails" if not failing
                  else "breaks pass-to-pass" if _failures_outside(run, own) else None)  # fmt: skip
        issue = ""
        if reason is None:
            try:
                issue = feature_issue(src, function, target.key, [run.results[n] for n in failing], suite,
                                      random.Random(f"{seed}:{target.module}:{function}:feature-issue"))
            except ValueError:
                reason = "no issue detail"
        if reason is not None:
            attempts.append(KindAttempt(**row, status="rejected", reason=reason))
            continue
        attempts.append(KindAttempt(**row, status="kept"))
        data = {**base_data(target, function, original, mutation), "kind": "feature", "f2p": failing,
                "p2p": [n for n in suite_test_names(suite) if n not in failing], "issue": issue}
        tasks.append(Task(id=f"swe-bugfix/{target.key}/{function}/feature", family="swe-bugfix", prompt="",
                          data=data, verifier={"type": "hidden_tests", "fail_to_pass": len(failing),
                                               "pass_to_pass": len(data["p2p"])}))
    return tasks, attempts


# --- perf ------------------------------------------------------------------------------------


def perf_issue(function: str, module_key: str, calls: tuple[str, ...], setup: str, rng: random.Random) -> str:
    """The symptom only: which call is slow on a large input. Not where, not why."""
    title = rng.choice((f"`{function}` is very slow on large inputs", f"Performance: `{module_key}` gets slow as input grows",
                        f"Slow `{module_key}` calls with big inputs"))
    code = "\n".join([setup, *calls])
    return (
        f"# {title}\n\n"
        + rng.choice(("This takes far longer than it should:", "The following is unexpectedly slow here:"))
        + f"\n\n```python\n{code}\n```\n\n"
        "The results are correct; the time is the problem: it grows much faster than the input. "
        "Please make it fast again without changing any result.\n"
    )


async def perf_tasks(target: TargetModule, files: dict[str, str], suite: str, seed: int, per_function: int,
                     rule: PerfRule, repeats: int, wall_s: float,
                     ) -> tuple[list[Task], list[KindAttempt], dict[str, dict[str, Any]]]:
    """Perf tasks of one target. `rule` is what verification will ask; generation times `repeats`
    interleaved pairs and keeps a slowdown when the original clears `rule` with its margin."""
    screen = PerfRule(rule.min_speedup, repeats, rule.generation_margin)
    original = files[target.module]
    src = Source(original)
    tasks: list[Task] = []
    attempts: list[KindAttempt] = []
    timings: dict[str, dict[str, Any]] = {}
    for (module, function), bench in sorted(BENCHMARKS.items()):
        if module != target.module:
            continue
        reference = await run_benchmark(files, benchmark_source(bench))
        if reference.problem or not all(isinstance(v, str) for v in reference.values):
            raise RuntimeError(f"the benchmark of {module}:{function} fails on the original: {reference.problem}")
        digests = [str(v) for v in reference.values]
        source = benchmark_source(bench, digests)
        again = await run_benchmark(files, source)  # the screen below compares with the faster of two runs
        reference_s = min(reference.elapsed_s, again.elapsed_s)
        candidates = slowdowns_for_function(src, function)
        random.Random(f"{seed}:{module}:{function}:perf").shuffle(candidates)
        kept = 0
        seen: set[str] = set()
        for candidate in candidates[:PERF_TRIES_PER_FUNCTION]:
            if kept >= per_function:
                break
            mutation = to_mutation(src, function, candidate)
            slow = mutation.apply(original)
            row = {"kind": "perf", "module": module, "function": function, "operator": candidate.operator}
            reason = await _perf_reason(slow, seen, target, files, suite, source, digests, wall_s)
            if reason is not None and reason.startswith("slow run "):  # a cheap screen before the measurement
                slow_s = float(reason.split()[2])
                reason = None if slow_s >= 2 * reference_s else "speed-up too small"
            timed = None
            if reason is None:
                timed, reason = await _measure_gold(files, module, slow, source, digests, screen)
            if reason is not None:
                attempts.append(KindAttempt(**row, status="rejected", reason=reason))
                continue
            assert timed is not None
            task_id = f"swe-bugfix/{target.key}/{function}/perf-{candidate.operator}-{kept}"
            timings[task_id] = timed.measurement.evidence()
            data = {**base_data(target, function, original, mutation), "kind": "perf", "f2p": [],
                    "p2p": suite_test_names(suite),
                    "benchmark": {"setup": bench.setup, "calls": list(bench.calls), "digests": digests},
                    "perf_rule": {"min_speedup": rule.min_speedup, "repeats": rule.repeats},
                    "issue": perf_issue(function, target.key, bench.calls, bench.setup,
                                        random.Random(f"{seed}:{module}:{function}:{kept}:perf-issue"))}  # fmt: skip
            tasks.append(Task(id=task_id, family="swe-bugfix", prompt="", data=data,
                              verifier={"type": "perf_benchmark", "calls": len(bench.calls),
                                        "pass_to_pass": len(data["p2p"])}))  # fmt: skip
            attempts.append(KindAttempt(**row, status="kept"))
            kept += 1
    return tasks, attempts, timings


async def _measure_gold(files: dict[str, str], module: str, slow: str, source: str, digests: list[str],
                        screen: PerfRule) -> tuple[Timed | None, str | None]:
    """The original timed against the slow version until it clears the bar (`measure_until_clear`)."""
    bar = screen.min_speedup * screen.generation_margin
    try:
        timed, cleared = await measure_until_clear(
            lambda: measure({**files, module: slow}, files, source, digests, screen),
            lambda t: t.correct and t.measurement.conservative_speedup >= bar)
    except VerifierError:  # the slow version timed out or misbehaved in one of the runs
        return None, "timeout"
    return timed, None if cleared else "speed-up too small"


async def _perf_reason(slow: str, seen: set[str], target: TargetModule, files: dict[str, str], suite: str,
                       source: str, digests: list[str], wall_s: float) -> str:
    """Why the slow version is no task, or `slow run T s` with the time of one benchmark run."""
    if slow in seen:
        return "duplicate"
    seen.add(slow)
    try:
        compile(slow, target.module, "exec")
    except SyntaxError:
        return "syntax error"
    run = await run_tests({**files, target.module: slow, f"tests/{target.suite}": suite}, [f"tests/{target.suite}"],
                          wall_s=wall_s)
    if run.any_timeout or run.problem:
        return "timeout"
    if run.failing():
        return "breaks pass-to-pass"
    bench = await run_benchmark({**files, target.module: slow}, source)
    if bench.problem or list(bench.values) != digests:
        return "changes results"
    return f"slow run {bench.elapsed_s:.6f} s"


# --- merged ----------------------------------------------------------------------------------


def _side(task: Task) -> bool:
    data = task.data
    return is_held_out(f"{data['package']}:{data['module']}:{data['function']}", salt="swe-bugfix")


def pair_bugs(bugs: list[Task], seed: int, module: str, keep: int) -> list[tuple[Task, Task]]:
    """Seeded greedy pairing: different functions, same split side, each bug used once."""
    order = list(bugs)
    random.Random(f"{seed}:{module}:merged").shuffle(order)
    used: set[str] = set()
    pairs: list[tuple[Task, Task]] = []
    for a in order:
        if len(pairs) >= keep or a.id in used:
            continue
        for b in order:
            if b.id in used or b.id == a.id or b.data["function"] == a.data["function"] or _side(a) != _side(b):
                continue
            used.update((a.id, b.id))
            pairs.append((a, b))
            break
    return pairs


def _overlap(a: Mutation, b: Mutation) -> bool:
    a_end = a.line_start + len(a.original.splitlines())
    b_end = b.line_start + len(b.original.splitlines())
    return a.line_start < b_end and b.line_start < a_end


def merged_issue(a: Task, b: Task) -> str:
    def body(issue: str) -> str:
        return "\n".join(issue.strip().splitlines()[1:]).strip()

    first, second = a.data["function"], b.data["function"]
    return (f"# Two problems: `{first}` and `{second}`\n\nI hit two separate problems in this package.\n\n"
            f"## 1. `{first}`\n\n{body(a.data['issue'])}\n\n## 2. `{second}`\n\n{body(b.data['issue'])}\n")


async def merged_tasks(target: TargetModule, files: dict[str, str], suite: str, bugs: list[Task], seed: int,
                       keep: int, wall_s: float) -> tuple[list[Task], list[KindAttempt]]:
    original = files[target.module]
    tasks: list[Task] = []
    attempts: list[KindAttempt] = []
    for a, b in pair_bugs(bugs, seed, target.module, keep):
        ma, mb = Mutation(**a.data["mutation"]), Mutation(**b.data["mutation"])
        row = {"kind": "merged", "module": target.module, "function": f"{a.data['function']}+{b.data['function']}",
               "operator": f"{ma.operator}+{mb.operator}"}
        union = sorted(set(a.data["f2p"]) | set(b.data["f2p"]))
        reason = "hunks overlap" if _overlap(ma, mb) else None
        if reason is None:
            run = await run_tests({**files, target.module: apply_hunks(original, [ma, mb]), f"tests/{target.suite}": suite},
                                  [f"tests/{target.suite}"], wall_s=wall_s)
            reason = ("timeout" if run.any_timeout or run.problem
                      else "bugs interact" if sorted(run.failing()) != union else None)  # fmt: skip
        if reason is not None:
            attempts.append(KindAttempt(**row, status="rejected", reason=reason))
            continue
        attempts.append(KindAttempt(**row, status="kept"))
        data = {**a.data, "kind": "merged", "more_mutations": [mb.to_dict()], "functions": [a.data["function"],
                b.data["function"]], "merged_from": [a.id, b.id], "f2p": union,
                "p2p": [n for n in suite_test_names(suite) if n not in union], "issue": merged_issue(a, b),
                "language": "python"}  # fmt: skip
        tasks.append(Task(id=f"{a.id}/merged-with/{b.data['function']}/{mb.operator}", family="swe-bugfix", prompt="",
                          data=data, verifier={"type": "hidden_tests", "fail_to_pass": len(union),
                                               "pass_to_pass": len(data["p2p"])}))
    return tasks, attempts
