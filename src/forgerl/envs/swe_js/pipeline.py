"""The swe-js generation pipeline: real npm package functions -> bugs, stubs, slowdowns -> tasks.

Per target function of a suite (packages.py), in a seeded, operator-diverse order, a mutant is kept
only under the swe-bugfix rules: it parses (else "syntax error"), the suite finishes in time
("timeout"), at least one test fails ("no test fails"), every failing test is a test of the
mutated target ("breaks pass-to-pass") and the failures say enough for an issue ("no issue
detail"). Kept bugs give bugfix tasks and their write-test twins; pairs of kept bugs in two
functions of a package, whose failures together are exactly the union of each bug's, give merged
tasks ("interacting bugs" otherwise). Removing a function's body gives a feature task under the
same rules. A `recompute` slowdown of a target's entry function gives a perf task when the whole
suite still passes ("changes results") and the gold, timed by the host against the slow version
interleaved, clears min_speedup x generation_margin in one of up to three measurements ("too little
slowdown").

Reproducibility: everything written to tasks.jsonl and the reports is decided by counts, seeds and
pinned inputs. A perf target's two timing decisions — its benchmark length (`rounds`) and whether
its slowdown cleared the bar — are measured once and pinned in `perf_pins.json`, as a lockfile pins
versions: a rebuild reads them (a pinned slowdown is timed once more, for perf_timings.json, and a
disagreement with its pin is reported, not acted on), and only a target without a pin is measured
and decided afresh. Why: a slowdown whose true conservative speed-up sits near the bar is kept by
one measurement and rejected by the next on a shared machine, retries or not (two rebuilds under
load kept 32 and 36 of 37). The measured timings go to `perf_timings.json`, the one output that
differs between builds.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from forgerl.envs.base import Task
from forgerl.envs.suites import is_held_out
from forgerl.envs.swe.pins import PerfPin
from forgerl.envs.swe.pipeline import diversified_order
from forgerl.envs.swe.tasktypes import GENERATION_MEASUREMENTS, PerfMeasurement, PerfRule, measure_until_clear
from forgerl.envs.swe.verify import COLLECT, SuiteRun
from forgerl.envs.swe_js.issue import VISIBLE_TEST, bug_report, feature_request, perf_report, prompt
from forgerl.envs.swe_js.judge import run_benchmarks, run_suite
from forgerl.envs.swe_js.mutate import (
    Injected,
    JsSource,
    apply_all,
    bug_candidates,
    parses,
    recompute,
    removal,
    to_mutation,
)
from forgerl.envs.swe_js.packages import PACKAGES, Suite, Target, installed_sources, load_suite, package_by_name, sha256
from forgerl.errors import ConfigError

FAMILY = "swe-js"
LANGUAGE = "javascript"
HELD_OUT_FRACTION = 0.2
REJECT_REASONS = ("syntax error", "timeout", "no test fails", "breaks pass-to-pass", "no issue detail", "duplicate",
                  "interacting bugs", "changes results", "too little slowdown")  # fmt: skip


@dataclass(frozen=True)
class GenerationConfig:
    seed: int = 0
    keep_per_function: int = 2
    max_tries_per_function: int = 6
    merged_per_package: int = 10
    concurrency: int = 2
    wall_s: float = 60.0
    perf_rule: PerfRule = PerfRule()
    perf_target_s: float = 2.5  # the slow version's benchmark compute time, above Node's start-up
    perf_pins: Mapping[str, PerfPin] = field(default_factory=dict)  # per `package:target` (perf_pins.json)
    packages: tuple[str, ...] = tuple(p.name for p in PACKAGES)


@dataclass(frozen=True)
class Attempt:
    """One row of the generation report."""

    kind: str
    package: str
    target: str
    function: str
    operator: str
    description: str
    line: int
    status: str
    reason: str = ""
    failing_tests: tuple[str, ...] = ()


@dataclass
class GenerationResult:
    tasks: list[Task] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    baseline_tests: dict[str, int] = field(default_factory=dict)
    pins: dict[str, PerfPin] = field(default_factory=dict)  # every perf target's decisions, pinned or measured now
    measured: list[str] = field(default_factory=list)  # the perf targets without a pin, decided in this build
    disagreements: list[str] = field(default_factory=list)  # pinned as kept, but this build's timing missed the bar
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)  # task id -> measured evidence


def split_key(package: str, module: str, target: str) -> str:
    return f"{package}:{module}:{target}"


def classify(run: SuiteRun, targets: set[str]) -> str | None:
    if run.any_timeout or run.problem:
        return "timeout"
    failing = run.failing()
    if not failing:
        return "no test fails"
    if COLLECT in failing or any(name.split("__", 1)[0] not in targets for name in failing):
        return "breaks pass-to-pass"
    return None


@dataclass
class _Context:
    package: str
    files: dict[str, str]
    suite: Suite
    config: GenerationConfig
    limiter: asyncio.Semaphore
    result: GenerationResult

    async def run(self, files: dict[str, str]) -> SuiteRun:
        async with self.limiter:
            return await run_suite(files, self.suite, wall_s=self.config.wall_s)


@dataclass(frozen=True)
class Kept:
    """A kept bug: what the merged step pairs."""

    target: Target
    injected: Injected
    failing: tuple[str, ...]
    results: tuple[Any, ...]


def _data(ctx: _Context, kind: str, target: Target, injected: list[Injected], f2p: list[str], issue: str,
          **extra: Any) -> dict[str, Any]:
    names = ctx.suite.names()
    return {
        "kind": kind, "language": LANGUAGE, "package": ctx.package, "version": package_by_name(ctx.package).version,
        "module": target.module, "function": target.name, "mutations": [i.to_dict() for i in injected],
        "source_sha256": {i.module: sha256(ctx.files[i.module]) for i in injected},
        "f2p": sorted(f2p), "p2p": [n for n in names if n not in set(f2p)], "issue": issue, "test_file": VISIBLE_TEST,
        **extra,
    }  # fmt: skip


def _task(task_id: str, data: dict[str, Any]) -> Task:
    verifier = {"type": "hidden_tests" if data["kind"] != "write_test" else "test_inversion",
                "fail_to_pass": len(data["f2p"]), "pass_to_pass": len(data["p2p"])}
    return Task(id=task_id, family=FAMILY, prompt=prompt(data), data=data, verifier=verifier)


def _row(kind: str, ctx: _Context, target: Target, function: str, mutation: Any) -> dict[str, Any]:
    return dict(kind=kind, package=ctx.package, target=target.name, function=function, operator=mutation.operator,
                description=mutation.description, line=mutation.line_start + 1)


async def _bugs(ctx: _Context, target: Target, function: str) -> tuple[list[Task], list[Attempt], list[Kept]]:
    original = ctx.files[target.module]
    src = JsSource(original)
    skip = tuple(f for f in target.functions if f != function)
    rng = random.Random(f"{ctx.config.seed}:{ctx.package}:{target.name}:{function}")
    order = diversified_order(bug_candidates(src, function, skip), rng)
    tasks, attempts, kept, seen = [], [], [], set()
    for candidate in order[: ctx.config.max_tries_per_function]:
        if len(kept) >= ctx.config.keep_per_function:
            break
        mutation = to_mutation(original, function, candidate)
        row = _row("bugfix", ctx, target, function, mutation)
        buggy = mutation.apply(original)
        if buggy in seen:
            attempts.append(Attempt(**row, status="rejected", reason="duplicate"))
            continue
        seen.add(buggy)
        if not parses(buggy):
            attempts.append(Attempt(**row, status="rejected", reason="syntax error"))
            continue
        run = await ctx.run({**ctx.files, target.module: buggy})
        reason = classify(run, {target.name})
        failing = tuple(sorted(run.failing())) if not run.problem else ()
        issue = ""
        if reason is None:
            issue_rng = random.Random(f"{ctx.config.seed}:{ctx.package}:{target.name}:{function}:{len(kept)}:issue")
            try:
                issue = bug_report(target.name, ctx.package, [run.results[n] for n in failing], issue_rng)
            except ValueError:
                reason = "no issue detail"
        if reason is not None:
            attempts.append(Attempt(**row, status="rejected", reason=reason, failing_tests=failing))
            continue
        attempts.append(Attempt(**row, status="kept", failing_tests=failing))
        injected = Injected(target.module, mutation)
        base = f"{FAMILY}/{ctx.package}/{target.name}/{function}/{mutation.operator}-{len(kept)}"
        data = _data(ctx, "bugfix", target, [injected], list(failing), issue)
        tasks += [_task(base, data), _task(base + "/write-test", {**data, "kind": "write_test"})]
        kept.append(Kept(target, injected, failing, tuple(run.results[n] for n in failing)))
    return tasks, attempts, kept


async def _feature(ctx: _Context, target: Target, function: str) -> tuple[list[Task], list[Attempt]]:
    original = ctx.files[target.module]
    mutation = to_mutation(original, function, removal(JsSource(original), function))
    row = _row("feature", ctx, target, function, mutation)
    stubbed = mutation.apply(original)
    if not parses(stubbed):
        return [], [Attempt(**row, status="rejected", reason="syntax error")]
    run = await ctx.run({**ctx.files, target.module: stubbed})
    reason = classify(run, {target.name})
    failing = tuple(sorted(run.failing())) if not run.problem else ()
    if reason is not None:
        return [], [Attempt(**row, status="rejected", reason=reason, failing_tests=failing)]
    rng = random.Random(f"{ctx.config.seed}:{ctx.package}:{target.name}:{function}:feature")
    issue = feature_request(function, target.module, ctx.package, list(ctx.suite.select(failing)), rng)
    data = _data(ctx, "feature", target, [Injected(target.module, mutation)], list(failing), issue)
    task = _task(f"{FAMILY}/{ctx.package}/{target.name}/{function}/feature", data)
    return [task], [Attempt(**row, status="kept", failing_tests=failing)]


async def calibrate_rounds(ctx: _Context, slow_files: dict[str, str], cases: tuple[Any, ...]) -> int:
    """Benchmark rounds that make the SLOW version compute for about `perf_target_s` beyond Node's
    start-up. Calibrating on the slow side keeps every perf task's verification time bounded, and
    the gold's share then shows the slowdown's factor (the JIT's warm-up, paid by both, stays a
    small part of the slow run)."""
    (start_up,) = await run_benchmarks([slow_files], ctx.suite, cases, 1, 2, wall_s=ctx.config.wall_s)
    base, target = min(start_up.times), ctx.config.perf_target_s
    rounds = 4
    for _ in range(10):  # the cost per round falls as the JIT warms up: converge, do not extrapolate
        (timed,) = await run_benchmarks([slow_files], ctx.suite, cases, rounds, 1, wall_s=ctx.config.wall_s)
        extra = max(timed.times[0] - base, 1e-3)
        if 0.7 * target <= extra <= 1.6 * target:
            break
        rounds = max(1, math.ceil(rounds * min(8.0, max(0.125, target / extra))))
    return rounds


async def _perf(ctx: _Context, target: Target) -> tuple[list[Task], list[Attempt]]:
    function = target.functions[0]
    original = ctx.files[target.module]
    candidate = recompute(JsSource(original), function)
    if candidate is None:
        return [], []
    mutation = to_mutation(original, function, candidate)
    row = _row("perf", ctx, target, function, mutation)
    slow_files = {**ctx.files, target.module: mutation.apply(original)}
    run = await ctx.run(slow_files)
    if run.problem or run.failing():
        reason = "timeout" if run.any_timeout or run.problem else "changes results"
        return [], [Attempt(**row, status="rejected", reason=reason, failing_tests=tuple(sorted(run.failing())))]
    cases = ctx.suite.select(ctx.suite.names_of(target.name))
    rule = ctx.config.perf_rule
    bar = rule.min_speedup * rule.generation_margin
    key = f"{ctx.package}:{target.name}"

    async def timed() -> tuple[bool, PerfMeasurement]:
        slow, gold = await run_benchmarks([slow_files, ctx.files], ctx.suite, cases, rounds, rule.repeats,
                                          wall_s=ctx.config.wall_s)
        return slow.correct and gold.correct, PerfMeasurement(baseline_s=slow.times, candidate_s=gold.times)

    pin = ctx.config.perf_pins.get(key)
    if pin is not None and not pin.kept:  # decided before: not timed again
        ctx.result.pins[key] = pin
        return [], [Attempt(**row, status="rejected", reason="too little slowdown")]
    async with ctx.limiter:  # timing runs alone on the limiter's slots, not beside a suite run
        rounds = pin.rounds if pin is not None and pin.rounds is not None else await calibrate_rounds(ctx, slow_files, cases)
        (_correct, measurement), cleared = await measure_until_clear(
            timed, lambda m: m[0] and m[1].conservative_speedup >= bar, tries=1 if pin is not None else GENERATION_MEASUREMENTS)
    if pin is None:
        ctx.result.measured.append(key)
    elif not cleared:
        ctx.result.disagreements.append(key)
    ctx.result.pins[key] = pin or PerfPin(rounds=rounds, kept=cleared)
    if not ctx.result.pins[key].kept:
        return [], [Attempt(**row, status="rejected", reason="too little slowdown")]
    perf = {"rounds": rounds, "bench": [c.name for c in cases], "min_speedup": rule.min_speedup,
            "repeats": rule.repeats}
    issue = perf_report(target.name, target.module, ctx.package, cases[0], bar)
    data = _data(ctx, "perf", target, [Injected(target.module, mutation)], [], issue, perf=perf)
    task = _task(f"{FAMILY}/{ctx.package}/{target.name}/{function}/perf", data)
    ctx.result.timings[task.id] = {**measurement.evidence(), "clears_bar": cleared}
    return [task], [Attempt(**row, status="kept")]


def _side(ctx: _Context, target: Target) -> bool:
    return is_held_out(split_key(ctx.package, target.module, target.name), salt=FAMILY,
                       held_out_fraction=HELD_OUT_FRACTION)


async def _merged(ctx: _Context, kept: list[Kept]) -> tuple[list[Task], list[Attempt]]:
    """Pairs of kept bugs in two functions of the package, on the same side of the split."""
    rng = random.Random(f"{ctx.config.seed}:{ctx.package}:merged")
    pairs = [(a, b) for i, a in enumerate(kept) for b in kept[i + 1 :]
             if a.injected.mutation.function != b.injected.mutation.function and _side(ctx, a.target) == _side(ctx, b.target)
             and (a.injected.module != b.injected.module or _disjoint(a.injected, b.injected))]  # fmt: skip
    rng.shuffle(pairs)
    tasks, attempts, used = [], [], set()
    for a, b in pairs:
        if len(tasks) >= ctx.config.merged_per_package:
            break
        key = (a.injected.mutation.function, b.injected.mutation.function)
        if key in used:
            continue
        row = dict(kind="merged", package=ctx.package, target=f"{a.target.name}+{b.target.name}",
                   function=f"{key[0]}+{key[1]}", operator=f"{a.injected.mutation.operator}+{b.injected.mutation.operator}",
                   description=f"{a.injected.mutation.description} / {b.injected.mutation.description}", line=0)
        files = apply_all(ctx.files, [a.injected, b.injected])
        run = await ctx.run(files)
        union = tuple(sorted(set(a.failing) | set(b.failing)))
        failing = tuple(sorted(run.failing())) if not run.problem else ()
        if run.problem or run.any_timeout:
            attempts.append(Attempt(**row, status="rejected", reason="timeout"))
            continue
        if failing != union:
            attempts.append(Attempt(**row, status="rejected", reason="interacting bugs", failing_tests=failing))
            continue
        used.add(key)
        issue_rng = random.Random(f"{ctx.config.seed}:{ctx.package}:{key}:merged")
        first = bug_report(a.target.name, ctx.package, list(a.results), issue_rng)
        second = bug_report(b.target.name, ctx.package, list(b.results), issue_rng).replace("# ", "## Also: ", 1)
        data = _data(ctx, "merged", a.target, [a.injected, b.injected], list(union), first + "\n\n" + second)
        tasks.append(_task(f"{FAMILY}/{ctx.package}/merged/{key[0]}+{key[1]}", data))
        attempts.append(Attempt(**row, status="kept", failing_tests=failing))
    return tasks, attempts


def _disjoint(a: Injected, b: Injected) -> bool:
    a_end = a.mutation.line_start + len(a.mutation.original.splitlines())
    b_end = b.mutation.line_start + len(b.mutation.original.splitlines())
    return a_end < b.mutation.line_start or b_end < a.mutation.line_start


async def _baseline(ctx: _Context) -> int:
    run = await ctx.run(ctx.files)
    if run.problem or run.failing() or run.tampering:
        detail = run.problem or ", ".join(run.failing()[:10]) or ", ".join(run.tampering)
        raise ConfigError(f"the {ctx.package} suite does not pass on the unmodified package: {detail}")
    return len(run.results)


async def _package(name: str, config: GenerationConfig, limiter: asyncio.Semaphore) -> GenerationResult:
    result = GenerationResult()
    ctx = _Context(name, dict(installed_sources(name)), load_suite(name), config, limiter, result)
    result.baseline_tests[name] = await _baseline(ctx)
    jobs = [(_bugs(ctx, t, f)) for t in ctx.suite.targets for f in t.functions]
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    kept: list[Kept] = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
        tasks, attempts, found = outcome
        result.tasks += tasks
        result.attempts += attempts
        kept += found
    side_jobs = [_feature(ctx, t, f) for t in ctx.suite.targets for f in t.functions]
    for tasks, attempts in await asyncio.gather(*side_jobs):
        result.tasks += tasks
        result.attempts += attempts
    for tasks, attempts in [await _merged(ctx, kept)] + [await _perf(ctx, t) for t in ctx.suite.targets]:
        result.tasks += tasks
        result.attempts += attempts
    return result


async def generate(config: GenerationConfig = GenerationConfig()) -> GenerationResult:
    limiter = asyncio.Semaphore(config.concurrency)
    total = GenerationResult()
    for name in config.packages:
        part = await _package(name, config, limiter)
        total.tasks += part.tasks
        total.attempts += part.attempts
        total.baseline_tests.update(part.baseline_tests)
        total.pins.update(part.pins)
        total.measured += part.measured
        total.disagreements += part.disagreements
        total.timings.update(part.timings)
    return total


# --- the report ------------------------------------------------------------------------------


def _counts(attempts: Iterable[Attempt], key: str) -> dict[str, dict[str, int]]:
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for a in attempts:
        table[key(a) if callable(key) else getattr(a, key)][a.status if a.status == "kept" else a.reason] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(table.items())}


def build_report(result: GenerationResult, config: GenerationConfig) -> dict[str, Any]:
    """Counts only: nothing here depends on timings, so the report rebuilds byte for byte (the
    measured timings are in perf_timings.json)."""
    attempts = result.attempts
    return {
        "seed": config.seed,
        "config": {"keep_per_function": config.keep_per_function, "max_tries_per_function": config.max_tries_per_function,
                   "merged_per_package": config.merged_per_package, "perf_rule": asdict(config.perf_rule)},
        "packages": {name: package_by_name(name).version for name in config.packages},
        "baseline_tests": result.baseline_tests,
        "totals": {
            "tasks": len(result.tasks),
            "by_kind": dict(sorted(Counter(t.data["kind"] for t in result.tasks).items())),
            "mutants_tried": len(attempts),
            "kept": sum(a.status == "kept" for a in attempts),
            "rejected": dict(sorted(Counter(a.reason for a in attempts if a.status != "kept").items())),
        },
        "by_package": _counts(attempts, "package"),
        "by_kind": _counts(attempts, "kind"),
        "by_operator": _counts(attempts, "operator"),
        "by_target": _counts(attempts, lambda a: f"{a.package}:{a.target}"),  # type: ignore[arg-type]
        "tasks_by_package": {p: dict(sorted(Counter(t.data["kind"] for t in result.tasks if t.data["package"] == p).items()))
                             for p in config.packages},
        "attempts": [asdict(a) for a in attempts],
    }


def _md_table(title: str, table: dict[str, dict[str, int]], columns: list[str]) -> str:
    lines = [f"## {title}", "", "| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, counts in table.items():
        lines.append(f"| {name} | " + " | ".join(str(counts.get(c, 0)) for c in columns) + " |")
    return "\n".join(lines)


def report_markdown(report: dict[str, Any]) -> str:
    totals = report["totals"]
    pins = ", ".join(f"{k}@{v}" for k, v in report["packages"].items())
    kinds = ", ".join(f"{k}: {v}" for k, v in totals["by_kind"].items())
    rejected = ", ".join(f"{k}: {v}" for k, v in totals["rejected"].items()) or "none"
    columns = ["kept", *REJECT_REASONS]
    kind_columns = ["bugfix", "write_test", "feature", "perf", "merged"]
    return "\n".join([
        "# swe-js generation report", "",
        f"Seed {report['seed']}; packages {pins}; hidden tests per package: "
        + ", ".join(f"{k} {v}" for k, v in report["baseline_tests"].items()) + ".",
        f"{totals['tasks']} tasks ({kinds}) from {totals['kept']} kept candidates out of {totals['mutants_tried']} "
        f"tried. Rejected: {rejected}.", "",
        "Rules as in swe-bugfix: *no test fails* = equivalent mutant; *breaks pass-to-pass* = tests of other "
        "targets fail too (or the package no longer loads); *timeout* = the suite hung or its process died; "
        "*syntax error* = does not parse (tree-sitter); *interacting bugs* = two bugs whose failures together "
        "are not the union of each one's; *changes results* = a slowdown that changed what the suite sees; "
        "*too little slowdown* = the gold did not beat the slow version by min_speedup x generation_margin "
        "(timed by the host, interleaved, up to three measurements). Timings are in perf_timings.json, not "
        "here, so this report rebuilds byte for byte.", "",
        _md_table("Tasks by package", report["tasks_by_package"], kind_columns), "",
        _md_table("By kind", report["by_kind"], columns), "",
        _md_table("By package", report["by_package"], columns), "",
        _md_table("By operator", report["by_operator"], columns), "",
        _md_table("By target", report["by_target"], columns), "",
    ])
