"""Running test files against a set of source files in a fresh sandbox, and slicing suites.

Both the generation pipeline (hundreds of mutants) and the verifier (one submission) go through
`run_tests`, so a task is scored by exactly the machinery that generated it. A fresh sandbox per run
means nothing the agent left in its workspace (a conftest.py, a sitecustomize, a patched test) can
reach the hidden tests: only the files the verifier names are copied in.
"""

from __future__ import annotations

import ast
import json
import re
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgerl.envs.swe._sandbox import new_sandbox
from forgerl.errors import ConfigError

RUNNER_NAME = "_forgerl_runner.py"
RUNNER_SOURCE = (Path(__file__).parent / "runner.py").read_text(encoding="utf-8")
COLLECT = "<collect>"


@dataclass(frozen=True)
class CaseResult:
    name: str
    outcome: str  # passed / failed / error / timeout
    message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


@dataclass(frozen=True)
class SuiteRun:
    """Per-test results of one run; `problem` says why there are none (timeout, crash);
    `tampering` lists signs that code under test interfered with the reporting (judge.py)."""

    results: dict[str, CaseResult]
    timed_out: bool = False
    problem: str | None = None
    tampering: tuple[str, ...] = ()

    def failing(self) -> list[str]:
        return [name for name, r in self.results.items() if not r.passed]

    def passed(self, name: str) -> bool:
        result = self.results.get(name)
        return result is not None and result.passed

    @property
    def any_timeout(self) -> bool:
        return self.timed_out or any(r.outcome == "timeout" for r in self.results.values())


def _parse_results(stdout: str, nonce: str) -> list[dict[str, Any]] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(nonce + " "):
            try:
                return json.loads(line[len(nonce) + 1 :])
            except json.JSONDecodeError:
                return None
    return None


async def run_tests(
    files: dict[str, str], test_files: list[str], *, wall_s: float = 60.0, per_test_timeout_s: float = 5.0
) -> SuiteRun:
    """Copy `files` into a fresh sandbox and run `test_files` (paths among them) with the runner."""
    missing = [t for t in test_files if t not in files]
    if missing:
        raise ConfigError(f"test files {missing} are not among the files copied into the sandbox")
    nonce = secrets.token_hex(12)
    sandbox = new_sandbox({**files, RUNNER_NAME: RUNNER_SOURCE}, wall_s)
    try:
        # a fixed hash seed: set/dict-of-str reprs in failure details are the same on every run
        argv = ["env", "PYTHONHASHSEED=0", sys.executable, RUNNER_NAME, f"--timeout={per_test_timeout_s}", *test_files]
        res = await sandbox.run(argv, stdin=nonce + "\n")
    finally:
        await sandbox.close()
    if res.timed_out:
        return SuiteRun({}, timed_out=True, problem=f"the test run took longer than {wall_s} s")
    raw = _parse_results(res.stdout, nonce)
    if raw is None:
        tail = (res.stderr or res.stdout)[-500:]
        return SuiteRun({}, problem=f"the test run crashed (exit code {res.exit_code}): {tail}")
    results = {
        r["name"]: CaseResult(r["name"], r["outcome"], r.get("message", ""), r.get("detail") or {}) for r in raw
    }
    return SuiteRun(results)


# --- suites ----------------------------------------------------------------------------------


def function_of_test(test_name: str) -> str:
    """`test_camelize__lower_first` -> `camelize` (the suite naming convention)."""
    if not test_name.startswith("test_") or "__" not in test_name[5:]:
        raise ConfigError(f"test {test_name!r} does not follow the `test_<function>__<case>` convention")
    return test_name[5:].split("__", 1)[0].replace("_DOT_", ".")


def suite_test_names(suite_source: str) -> list[str]:
    tree = ast.parse(suite_source)
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")]


def select_tests(suite_source: str, keep: set[str] | list[str]) -> str:
    """The suite with only the named test functions left (imports and helpers stay)."""
    keep = set(keep)
    unknown = keep - set(suite_test_names(suite_source))
    if unknown:
        raise ConfigError(f"tests {sorted(unknown)} are not in the suite")
    lines = suite_source.splitlines(keepends=True)
    drop: set[int] = set()
    for node in ast.parse(suite_source).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test") and node.name not in keep:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            drop.update(range(first, node.end_lineno + 1))
    kept = [line for i, line in enumerate(lines, start=1) if i not in drop]
    text = "".join(kept)
    while "\n\n\n\n" in text:
        text = text.replace("\n\n\n\n", "\n\n\n")
    return text.rstrip("\n") + "\n"


def suite_header(suite_source: str, names_used: str) -> str:
    """Import lines of the suite plus the helper functions that `names_used` (code text) refers to:
    enough context to make a snippet from a test runnable on its own."""
    tree = ast.parse(suite_source)
    parts = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            bound = [a.asname or a.name.split(".")[0] for a in node.names]
            if not any(re.search(rf"\b{re.escape(b)}\b", names_used) for b in bound):
                continue  # an import the snippet does not use
            parts.append(ast.get_source_segment(suite_source, node) or "")
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("test"):
            if re.search(rf"\b{re.escape(node.name)}\b", names_used):
                parts.append("\n" + (ast.get_source_segment(suite_source, node) or ""))
    return "\n".join(parts)
