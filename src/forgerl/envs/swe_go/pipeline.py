"""The swe-go generation pipeline: real Go package functions -> edits -> tasks of every kind.

For every function a package's own tests call (gosrc.test_calls), in a seeded, operator-diverse
order (swe.pipeline.diversified_order), a mutant is kept as a bug when
  * it still parses and builds                          (else "syntax error" / "does not build"),
  * the suite finishes within its time, twice in a row  (else "timeout"),
  * at least one test fails                             (else "no test fails"),
  * every failing test is a test of the mutated function (else "breaks pass-to-pass"),
  * some test fails alike in each of `output_runs` runs (else "flaky"),
  * the failures print something to write an issue from (else "no issue detail")
— the Python pipeline's rules. A kept bug gives a `bugfix` task and its `write_test` twin; a
function whose body, replaced by `panic("not implemented")`, fails only its own tests gives a
`feature` task; a quadratic slowdown that keeps every test passing and that the bug-free code beats
by `rule.min_speedup * rule.generation_margin` on the hidden benchmark, in one of up to three
measurements (`measure_until_clear`), gives a `perf` task; two kept
bugs of different functions of one package, failing only their functions' tests together, give a
`merged` task.

Reproducibility: tasks.jsonl and the reports are decided by seeds, counts and pinned inputs, so two
builds give them byte for byte. Three things on a shared machine would otherwise change them:
  * tests that draw random inputs (testing/quick seeds from the clock), iterate Go maps (random
    order) or panic at a random index fail differently (or not at all) from run to run: a mutant's
    failing suite is run `output_runs` times (same binary), and f2p, the issue and the write-test
    gold are built only on the tests that failed alike every time (gorun.merge_repeats); a mutant
    with none is "flaky";
  * a load spike can make a test hit its timeout: a run with a runaway test (timeout, out of
    memory) is retried once with `timeout_retry_factor` times the limits before the mutant is
    rejected as "timeout" — a real hang times out again, a spike does not;
  * a slowdown near the speed-up bar is kept by one measurement and rejected by the next: each
    (package, function, slowdown kind)'s decision is pinned in perf_pins.json (swe.pins) and a
    rebuild reads it; only the timings (perf_timings.json) differ between builds.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from forgerl.envs.base import Task
from forgerl.envs.swe.pins import PerfPin
from forgerl.envs.swe.pipeline import diversified_order
from forgerl.envs.swe.tasktypes import GENERATION_MEASUREMENTS, PerfRule, measure_until_clear
from forgerl.envs.swe_go import gosrc, perf
from forgerl.envs.swe_go.gorun import GoTestRun, run_go_tests
from forgerl.envs.swe_go.packages import PACKAGES, GoPackage, code_files, package_sources, sha256, test_files
from forgerl.errors import ConfigError

log = logging.getLogger("forgerl.swe_go")

FAMILY = "swe-go"
ISSUE_TEST_FILE = "issue_test.go"
REJECT_REASONS = ("syntax error", "does not build", "timeout", "no test fails", "breaks pass-to-pass", "flaky",
                  "no issue detail", "duplicate", "not faster", "bench differs")  # fmt: skip


@dataclass(frozen=True)
class GenerationConfig:
    seed: int = 0
    keep_per_function: int = 1
    max_tries_per_function: int = 3
    concurrency: int = 2
    wall_s: float = 120.0
    test_timeout_s: float = 20.0
    timeout_retry_factor: float = 2.0  # a runaway run is retried once with its limits times this
    output_runs: int = 30  # runs of a failing suite (same binary, ~30 ms each) that must agree on a test
    perf_pins: Mapping[str, PerfPin] = field(default_factory=dict)  # "package:function:kind" (perf_pins.json)
    packages: tuple[GoPackage, ...] = PACKAGES
    rule: PerfRule = PerfRule()
    max_merged_per_package: int = 8
    only_functions: frozenset[str] | None = None


@dataclass(frozen=True)
class Attempt:
    package: str
    function: str
    kind: str
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
    timings: dict[str, Any] = field(default_factory=dict)
    pins: dict[str, PerfPin] = field(default_factory=dict)  # every perf decision, pinned or measured now
    measured: list[str] = field(default_factory=list)  # perf keys without a pin, decided in this build
    disagreements: list[str] = field(default_factory=list)  # pinned as kept, but this build's timing missed the bar
    retried: list[str] = field(default_factory=list)  # runs retried after a runaway (load-dependent: not reported)


@dataclass(frozen=True)
class _Bug:
    fn: gosrc.GoFunction
    edit: gosrc.Edit
    failing: tuple[str, ...]
    issue: str


def apply_edits(files: dict[str, str], edits: list[gosrc.Edit]) -> dict[str, str]:
    """Edits applied from the end of each file backwards, so earlier offsets stay valid."""
    out = dict(files)
    for edit in sorted(edits, key=lambda e: (e.file, -e.start)):
        out[edit.file] = edit.apply(out[edit.file])
    return out


def classify(run: GoTestRun, allowed: set[str]) -> str | None:
    if run.problem and "build" in run.problem:
        return "does not build"
    if run.problem or run.tampering or run.runaway:
        return "timeout"
    failing = run.failing()
    if not failing:
        return "no test fails"
    if any(t not in allowed for t in failing):
        return "breaks pass-to-pass"
    if not run.stable_failing():
        return "flaky"
    return None


def failure_issue(package: GoPackage, fn: gosrc.GoFunction, run: GoTestRun, rng: random.Random) -> str:
    """An issue from the failing tests' own output (a panic message or the got/want lines)."""
    shown = [t for t in run.stable_failing() if _detail(run.messages.get(t, ""))][:2]  # printed alike in every run
    if not shown:
        raise ValueError("no failure output")
    opening = rng.choice([
        f"`{fn.name}` in `{package.import_path}` gives wrong results.",
        f"Something is off with `{fn.name}` (package `{package.import_path}`).",
        f"After the last change, `{fn.name}` in `{package.import_path}` misbehaves.",
    ])  # fmt: skip
    blocks = "\n\n".join(f"```\n{run.messages[t].strip()[-1200:]}\n```" for t in shown)
    return f"{opening} Running its tests shows:\n\n{blocks}\n\nPlease fix it without changing other behaviour."


def _detail(message: str) -> bool:
    """Whether a failure message says more than that the test failed (its `--- FAIL` line)."""
    return any(line.strip() and not line.startswith("--- FAIL") for line in message.splitlines())


def prompt(kind: str, package: GoPackage, data: dict[str, Any]) -> str:
    where = (f"The workspace holds the Go package `{package.import_path}` (package `{package.name}`, from Debian's "
             f"{package.deb}); its own tests are hidden. You can read, search and edit files and run shell commands "
             "(`go build`, `go vet`, `go test` work offline in the workspace). Call `submit` when you are done; "
             "hidden tests decide the reward.")  # fmt: skip
    task = {
        "bugfix": "Fix the bug the issue below describes, in the package source, keeping other behaviour unchanged.",
        "merged": "The issues below describe two bugs; fix both in the package source, keeping other behaviour unchanged.",
        "feature": "Implement the feature requested below.",
        "perf": ("Make the code fast again as the issue below asks, without changing any result: hidden tests must "
                 "still pass and a hidden benchmark must show a clear speed-up."),
        "write_test": (f"Do not fix the bug. Write a Go test file `{ISSUE_TEST_FILE}` in the package directory with "
                       "test functions that reproduce the issue below: they must fail on the current code and pass "
                       "once the bug is fixed (a test that also fails on correct code earns nothing)."),
    }[kind]  # fmt: skip
    return f"{where}\n\n{task}\n\n---\n\n{data['issue']}"


def make_task(kind: str, package: GoPackage, fns: list[gosrc.GoFunction], edits: list[gosrc.Edit],
              f2p: list[str], all_tests: list[str], issue: str, index: int, extra: dict[str, Any] | None = None) -> Task:
    sources = package_sources(package.import_path)
    data: dict[str, Any] = {
        "kind": kind, "language": "go", "package": package.import_path, "deb": package.deb,
        "package_name": package.name, "function": fns[0].name, "functions": [f.name for f in fns],
        "file": fns[0].file, "source_sha256": {e.file: sha256(sources[e.file]) for e in edits},
        "operator": "+".join(e.operator for e in edits), "edits": [e.to_dict() for e in edits],
        "f2p": sorted(f2p), "p2p": sorted(t for t in all_tests if t not in f2p), "issue": issue, **(extra or {}),
    }  # fmt: skip
    name = "+".join(f.name for f in fns)
    task_id = f"{FAMILY}/{package.key}/{name}/{kind}-{data['operator']}-{index}"
    verifier = {"type": "hidden_go_tests", "kind": kind, "fail_to_pass": len(data["f2p"]), "pass_to_pass": len(data["p2p"])}
    return Task(id=task_id, family=FAMILY, prompt=prompt(kind, package, data), data=data, verifier=verifier)


class _Generator:
    def __init__(self, config: GenerationConfig) -> None:
        self.config = config
        self.limiter = asyncio.Semaphore(config.concurrency)
        self.result = GenerationResult()

    async def run(self, package: GoPackage, files: dict[str, str], tests: list[str], repeats: int = 1) -> GoTestRun:
        """The suite run, retried once with longer limits after a runaway (see the module docstring)."""
        config = self.config
        for factor in (1.0, config.timeout_retry_factor):
            if factor != 1.0:
                self.result.retried.append(package.key)
            async with self.limiter:
                run = await run_go_tests(files, package.import_path, package.name, tests, wall_s=config.wall_s * factor,
                                         test_timeout_s=config.test_timeout_s * factor, repeats=repeats)  # fmt: skip
            if not run.runaway:
                break
        return run

    def row(self, package: GoPackage, fn: gosrc.GoFunction, kind: str, edit: gosrc.Edit, status: str, reason: str = "",
            failing: tuple[str, ...] = ()) -> None:
        self.result.attempts.append(Attempt(package.key, fn.name, kind, edit.operator, edit.description, edit.line,
                                            status, reason, failing))  # fmt: skip

    async def function(self, package: GoPackage, fn: gosrc.GoFunction, calls: dict[str, set[str]]) -> tuple[list[Task], list[_Bug]]:
        sources = package_sources(package.import_path)
        source, own = sources[fn.file], set(gosrc.tests_of(fn, calls))
        all_tests = list(calls)
        rng = random.Random(f"{self.config.seed}:{package.import_path}:{fn.name}")
        tasks: list[Task] = []
        bugs: list[_Bug] = []
        seen: set[str] = set()
        for edit in diversified_order(gosrc.mutations(fn.file, source, fn), rng)[: self.config.max_tries_per_function]:  # type: ignore[arg-type]
            if len(bugs) >= self.config.keep_per_function:
                break
            buggy = edit.apply(source)  # type: ignore[attr-defined]
            if buggy in seen:
                self.row(package, fn, "bugfix", edit, "rejected", "duplicate")  # type: ignore[arg-type]
                continue
            seen.add(buggy)
            if gosrc.has_errors(buggy):
                self.row(package, fn, "bugfix", edit, "rejected", "syntax error")  # type: ignore[arg-type]
                continue
            run = await self.run(package, {**sources, fn.file: buggy}, all_tests, repeats=self.config.output_runs)
            reason = classify(run, own)
            issue = ""
            if reason is None:
                try:
                    issue = failure_issue(package, fn, run, random.Random(f"{rng.random()}:issue"))
                except ValueError:
                    reason = "no issue detail"
            self.row(package, fn, "bugfix", edit, "kept" if reason is None else "rejected", reason or "", tuple(run.failing()))  # type: ignore[arg-type]
            if reason is not None:
                continue
            bug = _Bug(fn, edit, tuple(run.stable_failing()), issue)  # type: ignore[arg-type]
            bugs.append(bug)
            index = len(bugs) - 1
            tasks.append(make_task("bugfix", package, [fn], [bug.edit], list(bug.failing), all_tests, issue, index))
            gold_test = gosrc.standalone_test(test_files(package.import_path), list(bug.failing))
            tasks.append(make_task("write_test", package, [fn], [bug.edit], list(bug.failing), all_tests, issue, index,
                                   {"test_file": ISSUE_TEST_FILE, "gold_test": gold_test}))  # fmt: skip
        tasks += await self.feature(package, fn, own, all_tests)
        if gosrc.benchable(fn):
            tasks += await self.perf(package, fn, all_tests, rng)
        log.info("%s %s: %d tasks", package.key, fn.name, len(tasks))
        return tasks, bugs

    async def feature(self, package: GoPackage, fn: gosrc.GoFunction, own: set[str], all_tests: list[str]) -> list[Task]:
        sources = package_sources(package.import_path)
        edit = gosrc.stub_body(sources[fn.file], fn)
        run = await self.run(package, apply_edits(sources, [edit]), all_tests)
        reason = classify(run, own)
        self.row(package, fn, "feature", edit, "kept" if reason is None else "rejected", reason or "", tuple(run.failing()))
        if reason is not None:
            return []
        signature = gosrc.function_source(sources[fn.file], fn).split("{", 1)[0].strip()
        issue = (f"Feature request: `{fn.name}` in `{fn.file}` is declared but not implemented yet (its body just "
                 f"panics with \"not implemented\"). Please implement it:\n\n```go\n{signature}\n```\n\nIt should "
                 "behave as its name, its doc comment and the rest of the package suggest.")  # fmt: skip
        return [make_task("feature", package, [fn], [edit], run.stable_failing(), all_tests, issue, 0)]

    async def perf(self, package: GoPackage, fn: gosrc.GoFunction, all_tests: list[str], rng: random.Random) -> list[Task]:
        sources = package_sources(package.import_path)
        kinds = sorted(gosrc.SLOWDOWNS)
        rng.shuffle(kinds)
        for kind in kinds:
            edit = gosrc.slowdown(sources[fn.file], fn, kind)
            slow = apply_edits(sources, [edit])
            run = await self.run(package, slow, all_tests)
            reason = classify(run, set())
            reason = None if reason == "no test fails" else (reason or "breaks pass-to-pass")
            bench = perf.bench_program(package, fn.name, list(fn.params), perf.BENCH_LENGTHS[kind])
            measured = None
            if reason is None:
                measured, reason = await self.timed(package, edit, bench, f"{package.key}:{fn.name}:{kind}")
            self.row(package, fn, "perf", edit, "kept" if reason is None else "rejected", reason or "")
            if reason is not None:
                continue
            assert measured is not None
            issue = (f"`{fn.name}` in `{package.import_path}` has become very slow on long inputs: a call with a "
                     f"string of {perf.BENCH_LENGTHS[kind]:,} characters takes a noticeable fraction of a second, and "
                     "the time grows with the square of the length. Please make it fast again; its results must not "
                     "change.")  # fmt: skip
            rule = self.config.rule
            task = make_task("perf", package, [fn], [edit], [], all_tests, issue, 0, {
                "bench": bench, "perf_rule": {"min_speedup": rule.min_speedup, "repeats": rule.repeats,
                                              "generation_margin": rule.generation_margin}})  # fmt: skip
            timing = measured.measurement.evidence() if measured.measurement else {"problem": measured.problem}
            self.result.timings[task.id] = {**timing, "clears_bar": _clears(measured, self.bar)}
            return [task]
        return []

    @property
    def bar(self) -> float:
        return self.config.rule.min_speedup * self.config.rule.generation_margin

    async def timed(self, package: GoPackage, edit: gosrc.Edit, bench: str, key: str) -> tuple[perf.BenchResult | None, str | None]:
        """A slowdown's timing decision (the measurement and the reject reason or None), pinned: a pin
        that says rejected is not timed again; one that says kept is timed once, for the timings
        file, and a miss is recorded as a disagreement; a key without a pin is measured up to
        GENERATION_MEASUREMENTS times and pinned. A benchmark whose output differs is no timing
        decision and is never pinned."""
        pin = self.config.perf_pins.get(key)
        if pin is not None and not pin.kept:
            self.result.pins[key] = pin
            return None, "not faster"
        async with self.limiter:
            code = code_files(package.import_path)
            measured, _ = await measure_until_clear(
                partial(perf.measure, package, bench, apply_edits(code, [edit]), code, code, self.config.rule),
                partial(_stops_measuring, bar=self.bar), tries=1 if pin is not None else GENERATION_MEASUREMENTS)
        if measured.measurement is None and not _timed_out(measured):
            return measured, "bench differs"
        cleared = _clears(measured, self.bar)
        if pin is None:
            self.result.measured.append(key)
        elif not cleared:
            self.result.disagreements.append(key)
        self.result.pins[key] = pin or PerfPin(rounds=None, kept=cleared)
        return measured, None if self.result.pins[key].kept else "not faster"

    async def merged(self, package: GoPackage, bugs: list[_Bug], calls: dict[str, set[str]]) -> list[Task]:
        sources = package_sources(package.import_path)
        tasks: list[Task] = []
        pairs = [(bugs[i], bugs[i + 1]) for i in range(0, len(bugs) - 1, 1)]
        for a, b in pairs:
            if len(tasks) >= self.config.max_merged_per_package:
                break
            if a.fn.name == b.fn.name:
                continue
            edits = [a.edit, b.edit]
            run = await self.run(package, apply_edits(sources, edits), list(calls), repeats=self.config.output_runs)
            allowed = set(gosrc.tests_of(a.fn, calls)) | set(gosrc.tests_of(b.fn, calls))
            reason = classify(run, allowed)
            combined = gosrc.Edit(a.edit.file, 0, 0, "", "", "merged", f"{a.fn.name} + {b.fn.name}", a.edit.line)
            self.row(package, a.fn, "merged", combined, "kept" if reason is None else "rejected", reason or "",
                     tuple(run.failing()))  # fmt: skip
            if reason is not None:
                continue
            issue = f"Two problems were reported.\n\n## 1\n\n{a.issue}\n\n## 2\n\n{b.issue}"
            tasks.append(make_task("merged", package, [a.fn, b.fn], edits, run.stable_failing(), list(calls), issue, 0))
        return tasks


def _timed_out(measured: perf.BenchResult) -> bool:
    """A benchmark run that hit its wall: a timing miss under load, not a differing output."""
    return measured.measurement is None and "timed out" in (measured.problem or "")


def _clears(measured: perf.BenchResult, bar: float) -> bool:
    return measured.measurement is not None and measured.measurement.conservative_speedup >= bar


def _stops_measuring(measured: perf.BenchResult, bar: float) -> bool:
    """A benchmark whose output differs is not measured again; a slowdown is (a timed-out run
    included), until it clears `bar`."""
    return (measured.measurement is None and not _timed_out(measured)) or _clears(measured, bar)


async def generate(config: GenerationConfig = GenerationConfig()) -> GenerationResult:
    gen = _Generator(config)
    for package in config.packages:
        sources = package_sources(package.import_path)
        calls = gosrc.test_calls(test_files(package.import_path))
        baseline = await gen.run(package, sources, list(calls))
        if baseline.failing() or baseline.problem:
            raise ConfigError(f"the tests of {package.import_path} do not pass unmodified: {baseline.failing()} {baseline.problem}")
        gen.result.baseline_tests[package.key] = len(calls)
        fns = [f for name, src in code_files(package.import_path).items() for f in gosrc.functions(name, src)]
        fns = [f for f in fns if gosrc.tests_of(f, calls) and (config.only_functions is None or f.name in config.only_functions)]
        outcomes = await asyncio.gather(*(gen.function(package, fn, calls) for fn in fns))
        bugs: list[_Bug] = []
        for tasks, kept in outcomes:
            gen.result.tasks.extend(tasks)
            bugs.extend(kept)
        gen.result.tasks.extend(await gen.merged(package, bugs, calls))
    return gen.result


# --- the report ------------------------------------------------------------------------------


def _counts(attempts: list[Attempt], key: str) -> dict[str, dict[str, int]]:
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for a in attempts:
        table[getattr(a, key)][a.status if a.status == "kept" else a.reason] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(table.items())}


def build_report(result: GenerationResult, config: GenerationConfig) -> dict[str, Any]:
    attempts = sorted(result.attempts, key=lambda a: (a.package, a.function, a.kind, a.line, a.operator, a.description))
    kinds = Counter(t.data["kind"] for t in result.tasks)
    return {
        "seed": config.seed,
        "config": {"keep_per_function": config.keep_per_function, "max_tries_per_function": config.max_tries_per_function,
                   "perf_rule": asdict(config.rule)},
        "packages": {p.key: {"import_path": p.import_path, "deb": p.deb} for p in config.packages},
        "baseline_tests": result.baseline_tests,
        "totals": {"tasks": len(result.tasks), "by_kind": dict(sorted(kinds.items())), "tried": len(attempts),
                   "kept": sum(a.status == "kept" for a in attempts),
                   "rejected": dict(sorted(Counter(a.reason for a in attempts if a.status != "kept").items()))},
        "by_package": _counts(attempts, "package"),
        "by_kind": _counts(attempts, "kind"),
        "by_operator": _counts(attempts, "operator"),
        "tasks_by_package_and_kind": {p: dict(sorted(Counter(t.data["kind"] for t in result.tasks
                                                             if t.data["package"].endswith("/" + p)).items()))
                                      for p in sorted(result.baseline_tests)},
        "attempts": [asdict(a) for a in attempts],
    }  # fmt: skip


def _md_table(title: str, table: dict[str, dict[str, int]]) -> str:
    columns = ["kept", *REJECT_REASONS]
    lines = [f"## {title}", "", "| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(str(c.get(col, 0)) for col in columns) + " |" for name, c in table.items()]
    return "\n".join(lines)


def report_markdown(report: dict[str, Any]) -> str:
    totals = report["totals"]
    kinds = ", ".join(f"{v} {k}" for k, v in totals["by_kind"].items())
    rows = ["| package | " + " | ".join(sorted(totals["by_kind"])) + " |", "|---" * (len(totals["by_kind"]) + 1) + "|"]
    rows += [f"| {p} | " + " | ".join(str(c.get(k, 0)) for k in sorted(totals["by_kind"])) + " |"
             for p, c in report["tasks_by_package_and_kind"].items()]
    return "\n".join([
        "# swe-go generation report", "",
        f"Seed {report['seed']}; packages: " + ", ".join(f"{v['import_path']} ({v['deb']})" for v in report["packages"].values()) + ".",
        f"{totals['tasks']} tasks ({kinds}) from {totals['kept']} kept edits out of {totals['tried']} tried.", "",
        "Reasons: *no test fails* = equivalent mutant; *breaks pass-to-pass* = tests of other functions fail too; "
        "*timeout* = a test hung or ran out of memory, also on a retry with doubled limits; *flaky* = no failing test "
        "failed alike (outcome and output) in each of the repeated runs; *does not build* = the Go compiler refuses the mutant; "
        "*not faster* / *bench differs* = a slowdown the bug-free code does not clearly beat (as pinned in "
        "perf_pins.json), or whose benchmark output changed. Perf timings are in perf_timings.json (measured, so not "
        "byte-for-byte reproducible).", "",
        "## Tasks by package and kind", "", *rows, "",
        _md_table("By package", report["by_package"]), "",
        _md_table("By kind", report["by_kind"]), "",
        _md_table("By operator", report["by_operator"]), "",
    ])  # fmt: skip
