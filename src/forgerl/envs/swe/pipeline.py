"""The bug-injection pipeline (M2_NOTES §5): real package functions -> mutants -> tasks.

For every function a suite tests: propose mutations (mutate.py), try them in a seeded,
operator-diverse order, and keep a mutant only when
  * it still compiles                                   (else "syntax error"),
  * the suite finishes within its time and memory       (else "timeout"),
  * at least one test fails                             (else "no test fails": an equivalent mutant),
  * every failing test is a test of the mutated function (else "breaks pass-to-pass": the bug
    leaks into other functions or breaks the import, so the issue would not describe it),
  * the failures carry enough detail to write an issue  (else "no issue detail").
The failing tests become the fail-to-pass set, the rest of the suite the pass-to-pass set. Each
kept mutant yields a bug-fix task and, optionally, a test-inversion task ("write a test that
catches this bug"). Everything is deterministic given the seed.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from forgerl.envs.base import Task
from forgerl.envs.swe.issue import write_issue
from forgerl.envs.swe.mutate import Candidate, Source, candidates_for_function, to_mutation
from forgerl.envs.swe.packages import TARGETS, TargetModule, installed_sources, sha256, suite_text
from forgerl.envs.swe.verify import COLLECT, SuiteRun, function_of_test, run_tests, suite_test_names
from forgerl.errors import ConfigError

FAMILY = "swe-bugfix"
TEST_DIR = "tests"
ISSUE_TEST_FILE = "tests/test_issue.py"

REJECT_REASONS = ("syntax error", "timeout", "no test fails", "breaks pass-to-pass", "no issue detail", "duplicate")


@dataclass(frozen=True)
class GenerationConfig:
    seed: int = 0
    keep_per_function: int = 3
    max_tries_per_function: int = 8
    concurrency: int = 2
    write_test_variants: bool = True
    wall_s: float = 60.0
    targets: tuple[TargetModule, ...] = TARGETS
    only_functions: frozenset[str] | None = None  # restrict to these function names (tests, debugging)


@dataclass(frozen=True)
class Attempt:
    """One row of the generation report: a mutant tried, and what became of it."""

    package: str
    module: str
    function: str
    operator: str
    description: str
    line: int
    status: str  # "kept" or "rejected"
    reason: str = ""
    failing_tests: tuple[str, ...] = ()


@dataclass
class GenerationResult:
    tasks: list[Task] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    baseline_tests: dict[str, int] = field(default_factory=dict)


def diversified_order(candidates: list[Candidate], rng: random.Random) -> list[Candidate]:
    """Round-robin over operators (in a shuffled order), each operator's sites shuffled: the first
    few tries of a function cover different kinds of bugs instead of five off-by-ones."""
    by_op: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        by_op[c.operator].append(c)
    ops = sorted(by_op)
    rng.shuffle(ops)
    for op in ops:
        rng.shuffle(by_op[op])
    ordered: list[Candidate] = []
    while any(by_op[op] for op in ops):
        for op in ops:
            if by_op[op]:
                ordered.append(by_op[op].pop(0))
    return ordered


def test_path(target: TargetModule) -> str:
    return f"{TEST_DIR}/{target.suite}"


def classify(run: SuiteRun, function: str) -> str | None:
    """The rejection reason for a mutant's suite run, or None when the mutant is a good bug."""
    if run.any_timeout or run.problem:
        return "timeout"  # hung, ran out of memory, or the test process died: all resource runaways
    failing = run.failing()
    if not failing:
        return "no test fails"
    if COLLECT in failing or any(function_of_test(name) != function for name in failing):
        return "breaks pass-to-pass"
    return None


def bugfix_prompt(data: dict[str, Any]) -> str:
    return (
        f"The workspace holds the source of the Python package `{data['import_name']}` "
        f"(version {data['version']}) and its tests under `{TEST_DIR}/`. A user reported the issue below. "
        "Find the cause and fix it in the package source (not in the tests), keeping the other behaviour "
        "unchanged. You can read, search and edit files and run shell commands (for example "
        f"`python -m pytest {TEST_DIR} -q`). Call `submit` when you are done; hidden tests decide the reward.\n\n"
        f"---\n\n{data['issue']}"
    )


def write_test_prompt(data: dict[str, Any]) -> str:
    return (
        f"The workspace holds the source of the Python package `{data['import_name']}` "
        f"(version {data['version']}) and its tests under `{TEST_DIR}/`. A user reported the issue below. "
        f"Do not fix the bug. Instead write a pytest file `{ISSUE_TEST_FILE}` with test functions that "
        "reproduce it: they must fail on the current code and pass once the bug is fixed (a test that "
        "fails for any other reason, or also fails on correct code, earns nothing). Call `submit` when "
        f"you are done.\n\n---\n\n{data['issue']}"
    )


async def _try_function(
    target: TargetModule,
    function: str,
    files: dict[str, str],
    suite: str,
    config: GenerationConfig,
    limiter: asyncio.Semaphore,
) -> tuple[list[Task], list[Attempt]]:
    original = files[target.module]
    src = Source(original)
    rng = random.Random(f"{config.seed}:{target.module}:{function}")
    order = diversified_order(candidates_for_function(src, function), rng)
    tasks: list[Task] = []
    attempts: list[Attempt] = []
    seen_hunks: set[str] = set()
    kept = 0
    for candidate in order[: config.max_tries_per_function]:
        if kept >= config.keep_per_function:
            break
        mutation = to_mutation(src, function, candidate)
        row = dict(
            package=target.package.dist, module=target.module, function=function, operator=candidate.operator,
            description=candidate.description, line=mutation.line_start + 1,
        )  # fmt: skip
        buggy = mutation.apply(original)
        if buggy in seen_hunks:
            attempts.append(Attempt(**row, status="rejected", reason="duplicate"))
            continue
        seen_hunks.add(buggy)
        try:
            compile(buggy, target.module, "exec")
        except SyntaxError:
            attempts.append(Attempt(**row, status="rejected", reason="syntax error"))
            continue
        async with limiter:
            mutant_files = {**files, target.module: buggy, test_path(target): suite}
            run = await run_tests(mutant_files, [test_path(target)], wall_s=config.wall_s)
        reason = classify(run, function)
        failing = tuple(sorted(run.failing())) if not run.problem else ()
        if reason is None:
            issue_rng = random.Random(f"{config.seed}:{target.module}:{function}:{kept}:issue")
            try:
                issue = write_issue(function, target.key, [run.results[n] for n in failing], suite, issue_rng)
            except ValueError:
                reason = "no issue detail"
        if reason is not None:
            attempts.append(Attempt(**row, status="rejected", reason=reason, failing_tests=failing))
            continue
        attempts.append(Attempt(**row, status="kept", failing_tests=failing))
        tasks.extend(_make_tasks(target, function, mutation.to_dict(), original, suite, failing, issue, kept, config))
        kept += 1
    return tasks, attempts


def _make_tasks(
    target: TargetModule,
    function: str,
    mutation: dict[str, Any],
    original: str,
    suite: str,
    failing: tuple[str, ...],
    issue: str,
    index: int,
    config: GenerationConfig,
) -> list[Task]:
    package = target.package
    data: dict[str, Any] = {
        "kind": "bugfix",
        "package": package.dist,
        "version": package.version,
        "import_name": package.import_name,
        "module": target.module,
        "source_sha256": sha256(original),
        "function": function,
        "operator": mutation["operator"],
        "mutation": mutation,
        "suite": target.suite,
        "test_file": test_path(target),
        "f2p": list(failing),
        "p2p": [n for n in suite_test_names(suite) if n not in failing],
        "issue": issue,
    }
    base_id = f"{FAMILY}/{target.key}/{function}/{mutation['operator']}-{index}"
    hidden = {"type": "hidden_tests", "fail_to_pass": len(failing), "pass_to_pass": len(data["p2p"])}
    tasks = [Task(id=base_id, family=FAMILY, prompt=bugfix_prompt(data), data=data, verifier=hidden)]
    if config.write_test_variants:
        variant = {**data, "kind": "write_test"}
        inversion = {"type": "test_inversion", "test_file": ISSUE_TEST_FILE}
        tasks.append(Task(id=base_id + "/write-test", family=FAMILY, prompt=write_test_prompt(variant), data=variant,
                          verifier=inversion))
    return tasks


async def _baseline(target: TargetModule, files: dict[str, str], suite: str, wall_s: float) -> int:
    run = await run_tests({**files, test_path(target): suite}, [test_path(target)], wall_s=wall_s)
    if run.problem or run.failing():
        detail = run.problem or ", ".join(run.failing())
        raise ConfigError(f"suite {target.suite} does not pass on the unmodified {target.module}: {detail}")
    return len(run.results)


def functions_of_suite(suite: str) -> list[str]:
    return list(dict.fromkeys(function_of_test(n) for n in suite_test_names(suite)))


async def generate(config: GenerationConfig = GenerationConfig()) -> GenerationResult:
    """Run the whole pipeline; tasks come back in a stable order (target, function, try)."""
    limiter = asyncio.Semaphore(config.concurrency)
    result = GenerationResult()
    jobs = []
    for target in config.targets:
        files = installed_sources(target.package)
        if target.module not in files:
            raise ConfigError(f"{target.module} is not among the workspace files of {target.package.dist}")
        suite = suite_text(target.suite)
        result.baseline_tests[target.module] = await _baseline(target, files, suite, config.wall_s)
        functions = [f for f in functions_of_suite(suite) if config.only_functions is None or f in config.only_functions]
        jobs += [_try_function(target, fn, files, suite, config, limiter) for fn in functions]
    # return_exceptions: let every job finish rather than cancel sandboxes mid-run, then re-raise
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    for tasks, attempts in outcomes:  # type: ignore[misc]
        result.tasks.extend(tasks)
        result.attempts.extend(attempts)
    return result


# --- the report ------------------------------------------------------------------------------


def _counts(attempts: Iterable[Attempt], key: str) -> dict[str, dict[str, int]]:
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for a in attempts:
        table[getattr(a, key)][a.status if a.status == "kept" else a.reason] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(table.items())}


def build_report(result: GenerationResult, config: GenerationConfig) -> dict[str, Any]:
    attempts = result.attempts
    packages = {t.package.dist: t.package.version for t in config.targets}
    return {
        "seed": config.seed,
        "config": {
            "keep_per_function": config.keep_per_function,
            "max_tries_per_function": config.max_tries_per_function,
            "write_test_variants": config.write_test_variants,
        },
        "packages": packages,
        "baseline_tests": result.baseline_tests,
        "totals": {
            "tasks": len(result.tasks),
            "bugfix_tasks": sum(t.data["kind"] == "bugfix" for t in result.tasks),
            "write_test_tasks": sum(t.data["kind"] == "write_test" for t in result.tasks),
            "mutants_tried": len(attempts),
            "kept": sum(a.status == "kept" for a in attempts),
            "rejected": dict(sorted(Counter(a.reason for a in attempts if a.status != "kept").items())),
        },
        "by_package": _counts(attempts, "package"),
        "by_module": _counts(attempts, "module"),
        "by_operator": _counts(attempts, "operator"),
        "by_function": _function_counts(attempts),
        "attempts": [asdict(a) for a in attempts],
    }


def _function_counts(attempts: list[Attempt]) -> dict[str, dict[str, int]]:
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for a in attempts:
        table[f"{a.module}:{a.function}"][a.status if a.status == "kept" else a.reason] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(table.items())}


def _md_table(title: str, table: dict[str, dict[str, int]]) -> str:
    columns = ["kept", *REJECT_REASONS]
    lines = [f"## {title}", "", "| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, counts in table.items():
        lines.append(f"| {name} | " + " | ".join(str(counts.get(c, 0)) for c in columns) + " |")
    return "\n".join(lines)


def report_markdown(report: dict[str, Any]) -> str:
    totals = report["totals"]
    pins = ", ".join(f"{k}=={v}" for k, v in report["packages"].items())
    rejected = ", ".join(f"{k}: {v}" for k, v in totals["rejected"].items()) or "none"
    parts = [
        "# swe-bugfix generation report",
        "",
        f"Seed {report['seed']}; packages {pins}.",
        f"{totals['tasks']} tasks ({totals['bugfix_tasks']} bug-fix, {totals['write_test_tasks']} write-a-test) "
        f"from {totals['kept']} kept mutants out of {totals['mutants_tried']} tried. Rejected: {rejected}.",
        "",
        "Reasons: *no test fails* = equivalent mutant or untested code; *breaks pass-to-pass* = tests of "
        "other functions fail too (or the module no longer imports); *timeout* = the suite hung, ran "
        "out of memory or its process died; *syntax error* = the mutant does not compile; "
        "*duplicate* = same buggy source as an earlier mutant; *no issue detail* = the failure says too "
        "little to write an issue.",
        "",
        _md_table("By package", report["by_package"]),
        "",
        _md_table("By module", report["by_module"]),
        "",
        _md_table("By operator", report["by_operator"]),
        "",
        _md_table("By function", report["by_function"]),
        "",
    ]
    return "\n".join(parts)
