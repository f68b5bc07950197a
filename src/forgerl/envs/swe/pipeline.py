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
from forgerl.envs.suites import is_held_out
from forgerl.envs.swe.issue import write_issue
from forgerl.envs.swe.kinds import KindAttempt, feature_tasks, merged_tasks, perf_tasks
from forgerl.envs.swe.mutate import Candidate, Source, candidates_for_function, to_mutation
from forgerl.envs.swe.packages import TARGETS, TargetModule, installed_sources, sha256, suite_text
from forgerl.envs.swe.tasktypes import PerfRule
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
    extra_kinds: tuple[str, ...] = ("feature", "perf", "merged")  # made after the bug fixes (kinds.py)
    feature_per_module: int = 4
    perf_per_function: int = 2
    merged_per_module: int = 4
    perf_rule: PerfRule = PerfRule()  # what verification asks (stored in each perf task)
    perf_generation_repeats: int = 3  # interleaved pairs timed per kept slowdown at generation (each ~2 runs)


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
    kind_attempts: list[KindAttempt] = field(default_factory=list)
    perf_timings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Perf tasks' measurements at generation (timings are not reproducible, so they live beside
    the task file, not in it)."""


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


def feature_prompt(data: dict[str, Any]) -> str:
    return (
        f"The workspace holds the source of the Python package `{data['import_name']}` "
        f"(version {data['version']}) and its tests under `{TEST_DIR}/`. A user asked for the feature below. "
        "Implement it in the package source (not in the tests), keeping the other behaviour unchanged. You can "
        f"read, search and edit files and run shell commands (for example `python -m pytest {TEST_DIR} -q`). "
        f"Call `submit` when you are done; hidden tests decide the reward.\n\n---\n\n{data['issue']}"
    )


def perf_prompt(data: dict[str, Any]) -> str:
    return (
        f"The workspace holds the source of the Python package `{data['import_name']}` "
        f"(version {data['version']}) and its tests under `{TEST_DIR}/`. A user reported the performance "
        "problem below. Make the code fast again in the package source without changing any result; every "
        f"test must keep passing. You can read, search and edit files and run shell commands. Call `submit` "
        "when you are done: the tests and a hidden benchmark, timed against the current code, decide the "
        f"reward.\n\n---\n\n{data['issue']}"
    )


PROMPTS = {"feature": feature_prompt, "perf": perf_prompt, "merged": bugfix_prompt}


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
    await _generate_kinds(config, result)
    return result


async def _generate_kinds(config: GenerationConfig, result: GenerationResult) -> None:
    """Feature, perf and merged tasks, one target at a time (perf measures time: nothing else
    runs beside it). Kinds come out grouped, in target order."""
    made: dict[str, list[Task]] = {kind: [] for kind in config.extra_kinds}
    for target in config.targets:
        files = installed_sources(target.package)
        suite = suite_text(target.suite)
        functions = [f for f in functions_of_suite(suite) if config.only_functions is None or f in config.only_functions]
        if "feature" in made:
            tasks, attempts = await feature_tasks(target, files, suite, functions, config.seed,
                                                  config.feature_per_module, config.wall_s)
            made["feature"] += tasks
            result.kind_attempts += attempts
        if "perf" in made:
            tasks, attempts, timings = await perf_tasks(target, files, suite, config.seed, config.perf_per_function,
                                                        config.perf_rule, config.perf_generation_repeats,
                                                        config.wall_s)
            made["perf"] += tasks
            result.kind_attempts += attempts
            result.perf_timings.update(timings)
        if "merged" in made:
            bugs = [t for t in result.tasks if t.data["kind"] == "bugfix" and t.data["module"] == target.module]
            tasks, attempts = await merged_tasks(target, files, suite, bugs, config.seed, config.merged_per_module,
                                                 config.wall_s)
            made["merged"] += tasks
            result.kind_attempts += attempts
    for kind in config.extra_kinds:
        result.tasks += [t.model_copy(update={"prompt": PROMPTS[kind](t.data)}) for t in made[kind]]


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
            **{f"{kind}_tasks": sum(t.data["kind"] == kind for t in result.tasks) for kind in config.extra_kinds},
            "mutants_tried": len(attempts),
            "kept": sum(a.status == "kept" for a in attempts),
            "rejected": dict(sorted(Counter(a.reason for a in attempts if a.status != "kept").items())),
        },
        "by_package": _counts(attempts, "package"),
        "by_module": _counts(attempts, "module"),
        "by_operator": _counts(attempts, "operator"),
        "by_function": _function_counts(attempts),
        "attempts": [asdict(a) for a in attempts],
        "kinds": _kind_report(result, config),
    }


def _kind_report(result: GenerationResult, config: GenerationConfig) -> dict[str, Any]:
    """Per new kind: tasks by package, tries kept or rejected by reason, and the acceptance rule."""
    report: dict[str, Any] = {}
    for kind in config.extra_kinds:
        rows = [a for a in result.kind_attempts if a.kind == kind]
        tasks = [t for t in result.tasks if t.data["kind"] == kind]
        report[kind] = {
            "tasks": len(tasks),
            "held_out": sum(is_held_out(f"{t.data['package']}:{t.data['module']}:{t.data['function']}", salt=FAMILY)
                            for t in tasks),
            "by_package": dict(sorted(Counter(t.data["package"] for t in tasks).items())),
            "tried": len(rows),
            "rejected": dict(sorted(Counter(a.reason for a in rows if a.status != "kept").items())),
            "by_operator": _counts(rows, "operator"),
            "attempts": [asdict(a) for a in rows],
        }
    if "perf" in report:
        rule = config.perf_rule
        report["perf"]["rule"] = {"min_speedup": rule.min_speedup, "repeats": rule.repeats,
                                  "generation_margin": rule.generation_margin,
                                  "generation_repeats": config.perf_generation_repeats}
    return report


def _function_counts(attempts: list[Attempt]) -> dict[str, dict[str, int]]:
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for a in attempts:
        table[f"{a.module}:{a.function}"][a.status if a.status == "kept" else a.reason] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(table.items())}


def _md_table(title: str, table: dict[str, dict[str, int]], reasons: tuple[str, ...] = REJECT_REASONS) -> str:
    columns = ["kept", *reasons]
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
        *_kinds_markdown(report.get("kinds", {})),
    ]
    return "\n".join(parts)


_KIND_NOTES = {
    "feature": "A function's body replaced by `raise NotImplementedError`; kept when its own tests fail on the stub "
               "and every other test passes (f2p = its failing tests).",
    "perf": "A slowdown injected by an AST transform; kept when every test passes, the hidden benchmark's results "
            "are unchanged, and the original's conservative speed-up over the slow version clears "
            "min_speedup x generation_margin. Timings: perf_timings.json (not reproducible byte for byte).",
    "merged": "Two kept bug-fix mutants of different functions of one module (same split side) applied together; "
              "kept when the failing tests are exactly the union of both bugs' f2p.",
}


def _kinds_markdown(kinds: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for kind, info in kinds.items():
        rejected = ", ".join(f"{k}: {v}" for k, v in info["rejected"].items()) or "none"
        packages = ", ".join(f"{k} {v}" for k, v in info["by_package"].items()) or "none"
        lines += [f"# Kind: {kind}", "", _KIND_NOTES.get(kind, ""), "",
                  f"{info['tasks']} tasks ({packages}; {info['held_out']} held out) from {info['tried']} tried. "
                  f"Rejected: {rejected}.", ""]
        if "rule" in info:
            rule = info["rule"]
            lines += [f"Rule: min_speedup {rule['min_speedup']}, repeats {rule['repeats']} at verification; kept at "
                      f"generation when the conservative speed-up over {rule['generation_repeats']} interleaved pairs "
                      f">= min_speedup x {rule['generation_margin']}.", ""]
        lines += [_md_table(f"{kind}: by operator", info["by_operator"], tuple(info["rejected"])), ""]
    return lines
