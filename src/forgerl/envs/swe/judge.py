"""Scoring a submission so that code the agent controls cannot forge the verdict.

The agent's package must be imported to be tested, and whatever runs in that process can rewrite
anything there: the runner's functions, `json`, builtins, the result line, `__eq__` of the values it
returns. So the process that imports it decides nothing (worker.py). This module, on the host,
splits each hidden test into steps, and keeps to itself what the sandbox does not need to know:

  * `assert <expr> <op> <expected>` sends only `<expr>`; the expected value (a literal, or an
    expression over literal setup values) is evaluated here, and `<op>` is applied here to plain
    builtin data decoded from the worker's report. An object that is not plain data (one whose
    `__eq__` lies, say) is opaque and equals nothing;
  * `with pytest.raises(E): <body>` sends `<body>` as an ordinary step, indistinguishable from an
    assert's expression; the exception type is checked here;
  * test names never leave the host, and the hidden test file is never written into the sandbox
    (package code could read it).

Forging a pass then means reporting the right values without knowing them, i.e. fixing the bug.
Anything on the result channel that an honest worker never writes (a line that is not the
protocol, a result out of order or twice, a clean exit before the end, a replaced builtin) is
recorded as tampering, and the verifier scores a tampered run 0 with that evidence.

What stays out of reach of this design: a test shape it does not split (asserts nested in loops or
`with` blocks other than pytest.raises run as one worker step, judged only by whether they raise),
and solutions copied from elsewhere (e.g. the pristine package installed in the sandbox's
site-packages), which produce correct values and are a sandbox matter.
"""

from __future__ import annotations

import ast
import json
import operator
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgerl.envs.sandbox import Limits
from forgerl.envs.swe._sandbox import new_sandbox
from forgerl.envs.swe.verify import COLLECT, CaseResult, SuiteRun, suite_test_names
from forgerl.errors import ConfigError

WORKER_NAME = "_forgerl_worker.py"
WORKER_SOURCE = (Path(__file__).parent / "worker.py").read_text(encoding="utf-8")
MAX_OUTPUT_BYTES = 4_000_000  # far above an honest report (steps x line cap), so it is never cut
MAX_SHOWN = 300

_OPS: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_, ast.IsNot: operator.is_not,
}  # fmt: skip


# --- the plan: what the worker runs, and what only the host knows ----------------------------


@dataclass(frozen=True)
class Check:
    """One statement of a test, judged here. `kind`: "runs" (must not raise), "compare" (the value
    of step `step` against `expected`, or against the value of step `other`), "truthy", "falsy",
    "raises" (step `step` must raise `exception`, its message matching `match`)."""

    kind: str
    step: int
    text: str
    op: type[ast.cmpop] | None = None
    expected: Any = None
    other: int | None = None
    exception: str = ""
    match: str | None = None


@dataclass(frozen=True)
class TestPlan:
    name: str
    steps: tuple[dict[str, str], ...]
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class Plan:
    header: str
    tests: tuple[TestPlan, ...]

    def worker_input(self) -> str:
        """All the sandbox is told: code only, no names, operators or expected values."""
        return json.dumps({"header": self.header, "tests": [list(t.steps) for t in self.tests]})


class _Steps:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, mode: str, node: ast.AST) -> int:
        self.items.append({"mode": mode, "code": ast.unparse(node)})
        return len(self.items) - 1


def _literal_env_value(node: ast.expr, env: dict[str, Any]) -> tuple[bool, Any]:
    """(True, value) when `node` can be evaluated here from literals and literal setup values
    alone: no calls, no attribute access, only names bound to literals earlier in the test."""
    allowed = (ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.Name, ast.Load, ast.Subscript, ast.Slice,
               ast.UnaryOp, ast.USub, ast.UAdd, ast.Not, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Starred)  # fmt: skip
    for sub in ast.walk(node):
        if not isinstance(sub, allowed) or isinstance(sub, ast.Name) and sub.id not in env:
            return False, None
    try:
        code = compile(ast.Expression(node), "<expected>", "eval")
        return True, eval(code, {"__builtins__": {}}, dict(env))  # noqa: S307 - trusted suite text, no builtins
    except Exception:
        return False, None


def _raises_of(statement: ast.With) -> tuple[str, str | None] | None:
    """(exception name, match) of `with pytest.raises(E[, match=...]):`, else None."""
    if len(statement.items) != 1 or statement.items[0].optional_vars is not None:
        return None
    call = statement.items[0].context_expr
    if not (isinstance(call, ast.Call) and ast.unparse(call.func) in ("pytest.raises", "raises") and call.args):
        return None
    kind = call.args[0]
    name = kind.attr if isinstance(kind, ast.Attribute) else kind.id if isinstance(kind, ast.Name) else None
    if name is None:
        return None
    match = next((k.value for k in call.keywords if k.arg == "match"), None)
    pattern = match.value if isinstance(match, ast.Constant) and isinstance(match.value, str) else None
    return name, pattern


def _plan_statement(statement: ast.stmt, steps: _Steps, env: dict[str, Any]) -> Check:
    text = ast.unparse(statement)
    if isinstance(statement, ast.Assert):
        test = statement.test
        if isinstance(test, ast.Compare) and len(test.ops) == 1:
            left = steps.add("eval", test.left)
            known, expected = _literal_env_value(test.comparators[0], env)
            if known:
                return Check("compare", left, text, op=type(test.ops[0]), expected=expected)
            other = steps.add("eval", test.comparators[0])
            return Check("compare", left, text, op=type(test.ops[0]), other=other)
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return Check("falsy", steps.add("eval", test.operand), text)
        return Check("truthy", steps.add("eval", test), text)
    if isinstance(statement, ast.With) and (raises := _raises_of(statement)):
        body = statement.body
        if len(body) == 1 and isinstance(body[0], ast.Expr):
            step = steps.add("eval", body[0].value)
        else:
            step = steps.add("exec", ast.Module(body=body, type_ignores=[]))
        return Check("raises", step, text, exception=raises[0], match=raises[1])
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(statement.targets[0], ast.Name):
        try:
            env[statement.targets[0].id] = ast.literal_eval(statement.value)
        except ValueError:
            env.pop(statement.targets[0].id, None)
    else:
        for sub in ast.walk(statement):  # a name rebound some other way is no longer a known literal
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                env.pop(sub.id, None)
    return Check("runs", steps.add("exec", statement), text)


def plan_suite(suite_source: str) -> Plan:
    """Split a suite into the header (imports, helpers) and, per test function, worker steps and
    host checks, in source order."""
    tree = ast.parse(suite_source)
    header = [node for node in tree.body if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test"))]
    tests = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            if node.args.args or node.decorator_list:
                raise ConfigError(f"hidden test {node.name} takes fixtures or decorators, which the judge cannot run")
            steps, env = _Steps(), {}
            checks = tuple(_plan_statement(statement, steps, env) for statement in node.body)
            tests.append(TestPlan(node.name, tuple(steps.items), checks))
    return Plan(ast.unparse(ast.Module(body=header, type_ignores=[])), tuple(tests))


# --- decoding the worker's report -------------------------------------------------------------


class ProtocolError(ValueError):
    """The report is not something an honest worker writes."""


class Opaque:
    """A value that was not plain data: equal only to itself, so it satisfies no expectation."""

    def __init__(self, type_name: str, text: str) -> None:
        self.type_name, self.text = type_name, text

    def __repr__(self) -> str:
        return f"<{self.type_name}: {self.text}>"


_CONTAINERS: dict[str, Callable[[list[Any]], Any]] = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}


def decode(data: Any) -> Any:
    """Builtin values from the encoding (worker.py); ProtocolError on anything else."""
    try:
        return _decode(data)
    except (TypeError, ValueError, RecursionError) as exc:  # unhashable set members, bad digits, too deep
        raise ProtocolError(f"undecodable value: {exc}") from None


def _decode(data: Any) -> Any:
    if data is None or data is True or data is False:
        return data
    if not isinstance(data, list) or len(data) < 2 or not isinstance(data[0], str):
        raise ProtocolError(f"not a tagged value: {str(data)[:80]}")
    tag, body = data[0], data[1]
    if tag == "int" and isinstance(body, str) and re.fullmatch(r"-?\d+", body):
        return int(body)
    if tag == "float" and isinstance(body, str):
        return float(body)
    if tag == "str" and isinstance(body, str):
        return body
    if tag == "bytes" and isinstance(body, str):
        return bytes.fromhex(body)
    if tag in _CONTAINERS and isinstance(body, list):
        return _CONTAINERS[tag]([_decode(item) for item in body])
    if tag == "dict" and isinstance(body, list) and all(isinstance(p, list) and len(p) == 2 for p in body):
        return {_decode(k): _decode(v) for k, v in body}
    if tag == "opaque" and len(data) == 3 and all(isinstance(x, str) for x in data[1:]):
        return Opaque(data[1][:MAX_SHOWN], data[2][:MAX_SHOWN])
    raise ProtocolError(f"unknown value tag {tag!r}")


@dataclass
class Report:
    """What the worker said, checked for shape: step results by (test, step), and tampering signs."""

    steps: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    header_error: str | None = None
    done: bool = False
    tampering: list[str] = field(default_factory=list)


_RESULT_KEYS = ({"value"}, {"ok"}, {"raised", "message"}, {"timeout"})


def read_report(stdout: str, plan: Plan) -> Report:
    """Parse the result channel; every deviation from what an honest worker writes is recorded."""
    report, last = Report(), (-1, -1)
    for line in stdout.splitlines():
        if not line.strip():
            continue
        try:
            message = json.loads(line)
            if not isinstance(message, dict):
                raise ProtocolError("not an object")
            last = _read_message(message, plan, report, last)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and ProtocolError are ValueErrors
            report.tampering.append(f"unexpected output on the result channel ({exc}): {line[:120]!r}")
    if report.done and (gaps := _missing_results(plan, report)):
        report.tampering.append(f"the report claims to be complete but lacks results for {gaps} statements")
    return report


def _missing_results(plan: Plan, report: Report) -> int:
    """Steps without a result in a report marked done; an honest worker skips only the steps of a
    test after one that timed out."""
    missing = 0
    for t, test in enumerate(plan.tests):
        for s in range(len(test.steps)):
            if (t, s) not in report.steps:
                timed_out = any("timeout" in report.steps.get((t, earlier), {}) for earlier in range(s))
                missing += not timed_out
    return missing


def _read_message(message: dict[str, Any], plan: Plan, report: Report, last: tuple[int, int]) -> tuple[int, int]:
    if report.done:
        raise ProtocolError("output after the end of the report")
    keys = set(message)
    if keys == {"done"}:
        if message["done"] != len(plan.tests):
            raise ProtocolError(f"report ends after {message['done']} tests, the plan has {len(plan.tests)}")
        report.done = True
        return last
    if keys == {"integrity"} and isinstance(message["integrity"], list):
        names = ", ".join(str(n)[:80] for n in message["integrity"][:20])
        report.tampering.append(f"package code replaced what the test worker relies on: {names}")
        return last
    if "header" in keys and keys - {"header"} in ({"raised", "message"}, {"timeout"}):
        report.header_error = str(message.get("message") or message.get("timeout") or "")[:MAX_SHOWN]
        return last
    where = (message.get("t"), message.get("s"))
    if keys - {"t", "s"} not in _RESULT_KEYS or not all(isinstance(i, int) for i in where):
        raise ProtocolError("not a step result")
    t, s = where
    if not (0 <= t < len(plan.tests) and 0 <= s < len(plan.tests[t].steps)):
        raise ProtocolError(f"a result for step {s} of test {t}, which the plan does not have")
    if (t, s) <= last:
        raise ProtocolError(f"a result for step {s} of test {t} out of order or twice")
    if "value" in message:
        message = dict(message, value=decode(message["value"]))
    report.steps[(t, s)] = message
    return (t, s)


# --- judging ----------------------------------------------------------------------------------


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _judge_check(check: Check, test: int, report: Report) -> tuple[str, str, dict[str, Any]] | None:
    """None when the check holds, else (outcome, message, detail)."""
    result = report.steps.get((test, check.step))
    if result is None:
        return "error", "no result for this statement (the test worker stopped)", {"statement": check.text}
    if "timeout" in result:
        return "timeout", str(result["timeout"])[:MAX_SHOWN], {"statement": check.text}
    raised = "raised" in result and f"{result['raised'][0]}: {result['message']}"[:MAX_SHOWN]
    if check.kind == "raises":
        names = [str(n) for n in result.get("raised", [])]
        if check.exception in names and (check.match is None or re.search(check.match, str(result["message"]))):
            return None
        got = raised or "no exception"
        return "failed", f"expected {check.exception} to be raised, got {got}", {"statement": check.text}
    if raised:
        return "error", raised, {"statement": check.text, "actual_raises": raised}
    if check.kind == "runs":
        return None
    actual = result.get("value")
    if check.kind in ("truthy", "falsy"):
        holds = not isinstance(actual, Opaque) and bool(actual) == (check.kind == "truthy")
        return None if holds else ("failed", f"assert failed: {check.text}", {"statement": check.text, "actual": _show(actual)})
    if check.other is not None:
        other = report.steps.get((test, check.other))
        if other is None or "value" not in other:
            return "error", "the expected side raised or has no result", {"statement": check.text}
        expected = other["value"]
    else:
        expected = check.expected
    assert check.op is not None
    try:
        holds = _OPS[check.op](actual, expected) is True
    except Exception:  # e.g. `<` between a str and an int: the assert would have raised
        holds = False
    if holds and not isinstance(actual, Opaque):
        return None
    detail = {"statement": check.text, "expected": _show(expected), "actual": _show(actual)}
    return "failed", f"assert failed: {check.text}"[:MAX_SHOWN], detail


def judge(plan: Plan, report: Report) -> dict[str, CaseResult]:
    """Each test's outcome from its checks in order: the first that does not hold decides."""
    results: dict[str, CaseResult] = {}
    if report.header_error is not None:
        results[COLLECT] = CaseResult(COLLECT, "error", report.header_error)
    for index, test in enumerate(plan.tests):
        outcome = None
        for check in test.checks:
            outcome = _judge_check(check, index, report)
            if outcome is not None:
                break
        if outcome is None:
            results[test.name] = CaseResult(test.name, "passed")
        else:
            results[test.name] = CaseResult(test.name, outcome[0], outcome[1], outcome[2])
    return results


async def judge_tests(
    files: dict[str, str], suite_source: str, *, wall_s: float = 120.0, per_test_timeout_s: float = 5.0
) -> SuiteRun:
    """Run the suite against `files` (the package only: the suite never enters the sandbox) in a
    fresh sandbox, and decide every outcome here."""
    plan = plan_suite(suite_source)
    if len(plan.tests) != len(suite_test_names(suite_source)):
        raise ConfigError("the judge's plan lost a test of the suite")
    limits = Limits(wall_s=wall_s, cpu_s=wall_s, memory_mb=1024, max_output_bytes=MAX_OUTPUT_BYTES)
    sandbox = new_sandbox({**files, WORKER_NAME: WORKER_SOURCE}, wall_s)
    try:
        argv = ["env", "PYTHONHASHSEED=0", sys.executable, WORKER_NAME, f"--timeout={per_test_timeout_s}"]
        res = await sandbox.run(argv, stdin=plan.worker_input(), limits=limits)
    finally:
        await sandbox.close()
    if res.timed_out:
        return SuiteRun({}, timed_out=True, problem=f"the test run took longer than {wall_s} s")
    report = read_report(res.stdout, plan)
    tampering = list(report.tampering)
    problem = None
    if not report.done:
        if res.exit_code == 0:
            tampering.append("the test worker exited cleanly before reporting every test (os._exit from package code?)")
        problem = f"the test run stopped early (exit code {res.exit_code}): {(res.stderr or '')[-500:]}"
    return SuiteRun(judge(plan, report), problem=problem, tampering=tuple(tampering))
