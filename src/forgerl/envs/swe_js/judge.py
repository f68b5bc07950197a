"""Running hidden JavaScript tests so that code under test cannot forge the verdict.

The package must run in the same Node process as the expressions that test it, so that process
decides nothing (worker.js): it is told only expressions, never test names or expected values,
and reports each expression's value as plain tagged JSON. Here, on the host, each value is
decoded and compared with the expectation written in the suite; an object that is not plain
data (a class instance, a Proxy's target) is opaque and equals nothing.

The result channel is checked line by line: every line must carry the nonce sent on stdin (read by
the worker before the package is loaded), results come once each and in order, and the report
must end with `done`. A line without the nonce (package code printing fake results to fd 1), a
patched primordial the worker relies on, or a clean exit before the end (`process.exit(0)` in
package code) is tampering, and a tampered run scores 0. Forging a pass otherwise means printing
the right values without the expectations, i.e. computing them correctly.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgerl.envs.sandbox import Limits, Sandbox
from forgerl.envs.swe.verify import COLLECT, CaseResult, SuiteRun
from forgerl.envs.swe_js._sandbox import new_sandbox
from forgerl.envs.swe_js.packages import Case, Suite
from forgerl.errors import ConfigError

WORKER_NAME = "_forgerl_worker.js"
WORKER_SOURCE = (Path(__file__).parent / "worker.js").read_text(encoding="utf-8")
NODE_ARGV = ["node", "--max-old-space-size=256", "--stack-size=2000", WORKER_NAME]
MAX_OUTPUT_BYTES = 4_000_000
MAX_SHOWN = 300


class _Special:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


UNDEFINED, NAN = _Special("undefined"), _Special("NaN")


@dataclass(frozen=True)
class Opaque:
    """A value that was not plain data: it equals no expectation."""

    type_name: str

    def __repr__(self) -> str:
        return f"<{self.type_name}>"


class ProtocolError(ValueError):
    """The report is not something an honest worker writes."""


def decode(data: Any, depth: int = 0) -> Any:
    """Plain values from the worker's tagged JSON; ProtocolError on anything else."""
    if depth > 40:
        raise ProtocolError("value nested too deep")
    if data is None or isinstance(data, bool):
        return data
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise ProtocolError(f"not a tagged value: {str(data)[:80]}")
    tag, body = data[0], data[1:]
    if tag == "u" and not body:
        return UNDEFINED
    if tag == "nan" and not body:
        return NAN
    if tag == "n" and len(body) == 1 and isinstance(body[0], str):
        try:
            return float(body[0])
        except ValueError:
            raise ProtocolError(f"not a number: {body[0][:40]!r}") from None
    if tag == "s" and len(body) == 1 and isinstance(body[0], str):
        return body[0]
    if tag == "b" and len(body) == 1 and isinstance(body[0], str):
        return Opaque("bigint " + body[0][:40])
    if tag == "a" and len(body) == 1 and isinstance(body[0], list):
        return [decode(item, depth + 1) for item in body[0]]
    if tag == "o" and len(body) == 1 and isinstance(body[0], list):
        pairs = body[0]
        if not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
            raise ProtocolError("malformed object")
        return {k: decode(v, depth + 1) for k, v in pairs}
    if tag == "x" and len(body) == 2 and all(isinstance(b, str) for b in body):
        return Opaque(body[0][:80])
    raise ProtocolError(f"unknown value tag {tag!r}")


def expected_value(text: str) -> Any:
    """A suite's expectation: JSON, or the JavaScript words `undefined` / `NaN`."""
    if text == "undefined":
        return UNDEFINED
    if text == "NaN":
        return NAN
    try:
        return _floats(json.loads(text))
    except json.JSONDecodeError:
        raise ConfigError(f"expected value {text[:80]!r} is neither JSON nor undefined/NaN") from None


def _floats(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return [_floats(v) for v in value]
    return {k: _floats(v) for k, v in value.items()}


def same(actual: Any, expected: Any) -> bool:
    """Strict structural equality: types must match (true is not 1), opaque values never match."""
    if isinstance(actual, Opaque) or isinstance(expected, Opaque):
        return False
    if isinstance(expected, _Special) or isinstance(actual, _Special):
        return actual is expected
    if isinstance(expected, bool) or expected is None:
        return actual is expected
    if isinstance(expected, float):
        return isinstance(actual, float) and not isinstance(actual, bool) and (actual == expected)
    if isinstance(expected, str):
        return isinstance(actual, str) and actual == expected
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(map(same, actual, expected))
    if isinstance(expected, dict):
        return isinstance(actual, dict) and actual.keys() == expected.keys() and all(
            same(actual[k], expected[k]) for k in expected)
    return False


def show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and not math.isinf(value):
        text = str(int(value))
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, list):
        text = "[" + ", ".join(show(v) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{json.dumps(k)}: {show(v)}" for k, v in value.items()) + "}"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    else:
        text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


# --- the report ------------------------------------------------------------------------------


@dataclass
class Report:
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    header: dict[str, Any] | None = None
    done: bool = False
    tampering: list[str] = field(default_factory=list)


def read_report(stdout: str, nonce: str, expected_count: int) -> Report:
    """Parse the result channel; every deviation from an honest worker is recorded as tampering."""
    report, last = Report(), -1
    for line in stdout.splitlines():
        if not line.strip():
            continue
        if not line.startswith(nonce + " "):
            report.tampering.append(f"output on the result channel without the run's nonce: {line[:120]!r}")
            continue
        try:
            message = json.loads(line[len(nonce) + 1 :])
            if not isinstance(message, dict):
                raise ProtocolError("not an object")
            last = _read_message(message, report, last, expected_count)
        except (ValueError, RecursionError) as exc:
            report.tampering.append(f"malformed result line ({exc}): {line[:120]!r}")
    return report


def _read_message(message: dict[str, Any], report: Report, last: int, count: int) -> int:
    if report.done:
        raise ProtocolError("output after the end of the report")
    keys = set(message)
    if keys == {"done"}:
        if message["done"] not in (count, 0) or (message["done"] == 0 and report.header is None):
            raise ProtocolError(f"report ends after {message['done']} results, expected {count}")
        if message["done"] == count and len(report.results) != count:
            raise ProtocolError(f"report claims {count} results but holds {len(report.results)}")
        report.done = True
        return last
    if keys == {"integrity"}:
        names = ", ".join(str(n)[:60] for n in message["integrity"][:20]) if isinstance(message["integrity"], list) else "?"
        report.tampering.append(f"package code replaced what the test worker relies on: {names}")
        return last
    if keys == {"header", "raised", "message"}:
        report.header = message
        return last
    index = message.get("t")
    if not isinstance(index, int) or isinstance(index, bool) or keys - {"t"} not in ({"value"}, {"raised", "message"}, {"timeout"}):
        raise ProtocolError("not a result")
    if not 0 <= index < count or index <= last:
        raise ProtocolError(f"result {index} out of range, out of order or twice")
    if "value" in message:
        message = dict(message, value=decode(message["value"]))
    report.results[index] = message
    return index


def judge_case(case: Case, result: dict[str, Any] | None) -> CaseResult:
    if result is None:
        return CaseResult(case.name, "error", "no result (the test worker stopped)", {"expression": case.expr})
    if "timeout" in result:
        return CaseResult(case.name, "timeout", "took too long", {"expression": case.expr})
    detail: dict[str, Any] = {"expression": case.expr}
    if case.throws:
        if result.get("raised") == case.throws:
            return CaseResult(case.name, "passed")
        got = f"{result['raised']}: {result['message']}" if "raised" in result else f"returned {show(result['value'])}"
        detail.update(expected=f"throws {case.throws}", actual=got)
        return CaseResult(case.name, "failed", f"expected {case.throws} to be thrown, {got}"[:MAX_SHOWN], detail)
    expected = expected_value(case.expect)
    if "raised" in result:
        got = f"{result['raised']}: {result['message']}"[:MAX_SHOWN]
        detail.update(expected=show(expected), actual=f"throws {got}")
        return CaseResult(case.name, "error", got, detail)
    if same(result["value"], expected):
        return CaseResult(case.name, "passed")
    detail.update(expected=show(expected), actual=show(result["value"]))
    return CaseResult(case.name, "failed", f"{case.expr} returned {detail['actual']}, expected {detail['expected']}"[:MAX_SHOWN], detail)


# --- running -----------------------------------------------------------------------------------


def worker_input(suite: Suite, cases: tuple[Case, ...], nonce: str, *, mode: str = "suite", rounds: int = 1,
                 timeout_ms: int = 5000) -> str:
    prelude = suite.prelude.replace("@/", "./")
    return json.dumps({"nonce": nonce, "prelude": prelude, "exprs": [c.expr for c in cases], "mode": mode,
                       "rounds": rounds, "timeout_ms": timeout_ms})


def _limits(wall_s: float) -> Limits:
    return Limits(wall_s=wall_s, cpu_s=wall_s, memory_mb=1024, max_output_bytes=MAX_OUTPUT_BYTES)


async def _run_in(sandbox: Sandbox, suite: Suite, cases: tuple[Case, ...], wall_s: float, **kw: Any) -> tuple[SuiteRun, float]:
    nonce = secrets.token_hex(16)
    res = await sandbox.run(NODE_ARGV, stdin=worker_input(suite, cases, nonce, **kw), limits=_limits(wall_s))
    if res.timed_out:
        return SuiteRun({}, timed_out=True, problem=f"the test run took longer than {wall_s} s"), res.duration_s
    report = read_report(res.stdout, nonce, len(cases))
    tampering = list(report.tampering)
    problem = None
    if not report.done:
        if res.exit_code == 0:
            tampering.append("the test worker exited cleanly before reporting every test (process.exit in package code?)")
        problem = f"the test run stopped early (exit code {res.exit_code}): {(res.stderr or '')[-500:]}"
    results = {c.name: judge_case(c, report.results.get(i)) for i, c in enumerate(cases)}
    if report.header is not None:
        message = f"loading the package failed: {report.header['raised']}: {report.header['message']}"[:MAX_SHOWN]
        results[COLLECT] = CaseResult(COLLECT, "error", message)
    return SuiteRun(results, problem=problem, tampering=tuple(tampering)), res.duration_s


def package_files(files: dict[str, str]) -> dict[str, str]:
    if WORKER_NAME in files:
        raise ConfigError(f"{WORKER_NAME} is reserved for the test worker")
    return {**files, WORKER_NAME: WORKER_SOURCE}


async def run_suite(files: dict[str, str], suite: Suite, cases: tuple[Case, ...] | None = None, *,
                    wall_s: float = 60.0, timeout_ms: int = 5000) -> SuiteRun:
    """The suite's tests (or `cases`) against `files` (the package only) in a fresh sandbox."""
    cases = suite.cases if cases is None else cases
    sandbox = new_sandbox(package_files(files), wall_s)
    try:
        run, _ = await _run_in(sandbox, suite, cases, wall_s, timeout_ms=timeout_ms)
    finally:
        await sandbox.close()
    return run


@dataclass(frozen=True)
class BenchSeries:
    """Process wall times of one version's benchmark runs, and whether every run gave the
    expected values (a fast but wrong version does not count)."""

    times: tuple[float, ...]
    correct: bool
    tampering: tuple[str, ...]
    problem: str | None


async def run_benchmarks(versions: list[dict[str, str]], suite: Suite, cases: tuple[Case, ...], rounds: int,
                         repeats: int, *, wall_s: float = 60.0) -> list[BenchSeries]:
    """Time each version's benchmark `repeats` times, interleaved (v0, v1, v0, v1, ...), each run
    a fresh Node process timed by the host: nothing in the process can touch the clock."""
    sandboxes = [new_sandbox(package_files(files), wall_s) for files in versions]
    times: list[list[float]] = [[] for _ in versions]
    correct = [True] * len(versions)
    tampering: list[list[str]] = [[] for _ in versions]
    problems: list[str | None] = [None] * len(versions)
    try:
        for _ in range(repeats):
            for i, sandbox in enumerate(sandboxes):
                run, seconds = await _run_in(sandbox, suite, cases, wall_s, mode="bench", rounds=rounds)
                times[i].append(seconds)
                if run.failing() or run.problem or run.tampering or len(run.results) != len(cases):
                    correct[i] = False
                    problems[i] = problems[i] or run.problem or ", ".join(run.failing()[:5])
                tampering[i] += [t for t in run.tampering if t not in tampering[i]]
    finally:
        for sandbox in sandboxes:
            await sandbox.close()
    return [BenchSeries(tuple(t), c, tuple(m), p) for t, c, m, p in zip(times, correct, tampering, problems, strict=True)]


# --- a test the agent wrote (test inversion) ----------------------------------------------------

_TAP_COUNT = re.compile(r"^# (pass|fail) (\d+)$", re.MULTILINE)


@dataclass(frozen=True)
class WrittenTestRun:
    passed: int
    failed: int
    exit_code: int
    timed_out: bool
    output: str

    @property
    def all_pass(self) -> bool:
        """At least one test ran and none failed (a file that does not load fails)."""
        return not self.timed_out and self.exit_code == 0 and self.passed > 0 and self.failed == 0

    @property
    def fails(self) -> bool:
        return self.timed_out or self.exit_code != 0 or self.failed > 0


async def run_written_test(files: dict[str, str], test_path: str, test_source: str, *, wall_s: float = 60.0) -> WrittenTestRun:
    """The agent's node:test file against `files` in a fresh sandbox (no package.json, no config:
    Node runs the one file). The file is the agent's own answer, so what it prints is only
    its own claim; the exit status and counts say whether its tests held."""
    sandbox = new_sandbox({**files, test_path: test_source}, wall_s)
    try:
        res = await sandbox.run(["node", "--test", "--test-reporter=tap", test_path], limits=_limits(wall_s))
    finally:
        await sandbox.close()
    counts = {kind: int(n) for kind, n in _TAP_COUNT.findall(res.stdout)}
    return WrittenTestRun(counts.get("pass", 0), counts.get("fail", 0), res.exit_code, res.timed_out,
                          (res.stdout + res.stderr)[-2000:])
