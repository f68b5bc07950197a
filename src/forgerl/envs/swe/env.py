"""The swe-bugfix environment: a sandboxed copy of a real package with an injected bug, file tools,
a shell, and hidden tests as the verifier (M2_NOTES §5).

Every task kind of tasktypes.py shares the environment, routed by `task.data["kind"]` at submit
and scored through `kind_verdict` (the breakdown names the kind's checks):
  * `bugfix`, `feature`, `merged`: the hidden fail-to-pass tests (the bug's; the removed feature's;
    both bugs') and the pass-to-pass tests must all pass on the agent's package source;
  * `perf`: every test passes, and the hidden benchmark, timed by the host against the slow version
    (interleaved, `PerfRule`), gives the original's results with a stable speed-up (perf.py);
  * `write_test` (test inversion): write `tests/test_issue.py` reproducing the bug; outcome 1 when
    that file fails on the buggy package and passes on the fixed one.
Scoring happens at `submit`, in fresh sandboxes holding only the files the verifier names, so
nothing else the agent left in its workspace (a conftest.py, edited tests) reaches the hidden tests.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from forgerl.envs.base import Environment, Task, Verdict
from forgerl.envs.sandbox.workspace import release_soon, workspace_path
from forgerl.envs.swe._sandbox import UNHIDDEN_NOTE, make_limits, new_sandbox
from forgerl.envs.swe.judge import judge_tests
from forgerl.envs.swe.packages import package_by_dist, suite_text
from forgerl.envs.swe.perf import Bench, benchmark_source, measure
from forgerl.envs.swe.pipeline import FAMILY, ISSUE_TEST_FILE
from forgerl.envs.swe.tasktypes import PerfRule, fraction_passed, kind_verdict
from forgerl.envs.swe.verify import COLLECT, SuiteRun, run_tests, select_tests
from forgerl.envs.swe.workspace import (
    agent_workspace,
    buggy_files,
    check_task,
    mutation_of,
    mutations_of,
    original_files,
)
from forgerl.envs.tool_io import clip_observation, object_schema, string_argument
from forgerl.errors import SandboxError, ToolError, VerifierError
from forgerl.types import Message, ToolCall, ToolSpec, Trajectory

MAX_READ_LINES = 400
MAX_SEARCH_RESULTS = 60
SHELL_WALL_S = 60.0
VERIFY_WALL_S = 120.0
SEARCH_WALL_S = 5.0
SEARCH_SCRIPT = """
import json, re, sys
request = json.load(sys.stdin)
regex, found = re.compile(request["pattern"]), 0
for rel in request["files"]:
    try:
        with open(rel, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError):
        continue
    for n, line in enumerate(lines, start=1):
        if regex.search(line):
            print(f"{rel}:{n}: {line.strip()[:200]}", flush=True)
            found += 1
            if found >= request["max"]:
                sys.exit(0)
"""

SYSTEM_PROMPT = (
    "You are a software engineer working in a sandboxed repository. Use the tools to read, search "
    "and edit files and to run shell commands. Paths are relative to the repository root. When the "
    "work is done, call submit exactly once."
)


_PATH = {"type": "string", "description": "file path relative to the repository root"}
READ_FILE = ToolSpec(
    name="read_file",
    description=f"Show a file with line numbers (at most {MAX_READ_LINES} lines per call).",
    parameters=object_schema(
        {"path": _PATH, "start_line": {"type": "integer", "description": "first line, 1-based (default 1)"},
         "end_line": {"type": "integer", "description": "last line, inclusive"}},
        ["path"],
    ),
)  # fmt: skip
SEARCH = ToolSpec(
    name="search",
    description="Search files for a regular expression (Python syntax), like grep -rn.",
    parameters=object_schema(
        {"pattern": {"type": "string"}, "path": {"type": "string", "description": "file or directory (default: all)"}},
        ["pattern"],
    ),
)
EDIT_FILE = ToolSpec(
    name="edit_file",
    description=(
        "Edit a file. Either give old_text (must occur exactly once) and new_text to replace it, or "
        "give start_line and end_line (inclusive, 1-based) and new_text to replace those lines."
    ),
    parameters=object_schema(
        {"path": _PATH, "old_text": {"type": "string"}, "new_text": {"type": "string"},
         "start_line": {"type": "integer"}, "end_line": {"type": "integer"}},
        ["path", "new_text"],
    ),
)  # fmt: skip
WRITE_FILE = ToolSpec(
    name="write_file",
    description="Create a file, or overwrite it, with the given content.",
    parameters=object_schema({"path": _PATH, "content": {"type": "string"}}, ["path", "content"]),
)
RUN_SHELL = ToolSpec(
    name="run_shell",
    description=(
        f"Run a shell command in the repository root (time limit {SHELL_WALL_S:.0f} s), "
        "e.g. python -m pytest tests -q."
    ),
    parameters=object_schema({"command": {"type": "string"}}, ["command"]),
)
SUBMIT = ToolSpec(
    name="submit",
    description="Finish the task: the hidden tests are run on the workspace. Only the first submission counts.",
    parameters=object_schema({}, []),
)
TOOLS = [READ_FILE, SEARCH, EDIT_FILE, WRITE_FILE, RUN_SHELL, SUBMIT]


def _int_arg(args: dict[str, Any], name: str) -> int | None:
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ToolError(f"{name} must be an integer line number, got {value!r}")
    return value


class SweEnv(Environment):
    family = FAMILY

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.task: Task | None = None
        self._sandbox: Any = None
        self._verdict: Verdict | None = None

    # --- protocol --------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._verdict is not None

    def tools(self) -> list[ToolSpec]:
        return list(TOOLS)

    system_prompt = SYSTEM_PROMPT

    def reset(self, task: Task) -> list[Message]:
        """The shared episode start of every coding family; a language's family overrides the
        workspace (`_workspace_files`), its sandbox (`_new_sandbox`) and `system_prompt`."""
        files = self._workspace_files(task)
        self._discard_sandbox()
        self.task, self._verdict = task, None
        self._sandbox = self._new_sandbox(files)
        return [Message(role="system", content=self.system_prompt), Message(role="user", content=task.prompt)]

    def _workspace_files(self, task: Task) -> dict[str, str]:
        check_task(task)
        return agent_workspace(task)  # raises ConfigError on a wrong package version

    def _new_sandbox(self, files: dict[str, str]) -> Any:
        return new_sandbox(files, SHELL_WALL_S)

    async def execute(self, call: ToolCall) -> str:
        if self.task is None or self._sandbox is None:
            raise ToolError("the environment has no task: reset() it first")
        handlers = {
            "read_file": self._read_file, "search": self._search, "edit_file": self._edit_file,
            "write_file": self._write_file, "run_shell": self._run_shell, "submit": self._submit,
        }  # fmt: skip
        handler = handlers.get(call.name)
        if handler is None:
            raise ToolError(f"unknown tool {call.name!r}; available: {', '.join(handlers)}")
        if self.done:
            raise ToolError("the task was already submitted; the episode is over")
        return await handler(call.arguments)

    def verify(self, trajectory: Trajectory) -> Verdict:
        if self.task is None:
            raise VerifierError("verify() called before reset(): no task to verify against")
        if self._verdict is None:
            return Verdict(outcome=0.0, parts={"submitted": 0.0}, evidence={"reason": "the agent never called submit"})
        return self._verdict

    def gold_solution(self, task: Task) -> list[list[ToolCall]]:
        data = check_task(task)
        if data["kind"] == "write_test":
            content = select_tests(suite_text(data["suite"]), data["f2p"])
            return [
                [ToolCall(name="write_file", arguments={"path": ISSUE_TEST_FILE, "content": content})],
                [ToolCall(name="submit", arguments={})],
            ]
        if data["kind"] != "bugfix":
            return [_revert_hunks(task), [ToolCall(name="submit", arguments={})]]
        mutation = mutation_of(task)
        buggy_source = buggy_files(task)[data["module"]]
        if buggy_source.count(mutation.buggy) == 1:
            edit = {"path": data["module"], "old_text": mutation.buggy, "new_text": mutation.original}
        else:
            edit = {"path": data["module"], "start_line": mutation.line_start, "end_line": mutation.buggy_line_end,
                    "new_text": mutation.original}  # fmt: skip
        return [[ToolCall(name="edit_file", arguments=edit)], [ToolCall(name="submit", arguments={})]]

    async def close(self) -> None:
        if self._sandbox is not None:
            sandbox, self._sandbox = self._sandbox, None
            await sandbox.close()

    def _discard_sandbox(self) -> None:
        """reset() is synchronous: a previous episode's sandbox is closed soon (sandbox/workspace.py)."""
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            release_soon(sandbox.close)

    # --- paths -----------------------------------------------------------------------------

    def _rel(self, path: Any) -> str:
        return workspace_path(path, self._sandbox.workspace, place="repository root")

    def _read_text(self, rel: str) -> str:
        try:
            return self._sandbox.read_file(rel)
        except FileNotFoundError:
            raise ToolError(f"no file {rel!r}; use search or run_shell `ls` to find files") from None
        except (SandboxError, UnicodeDecodeError, IsADirectoryError) as exc:
            raise ToolError(f"cannot read {rel!r}: {exc}") from None

    # --- tools -----------------------------------------------------------------------------

    async def _read_file(self, args: dict[str, Any]) -> str:
        rel = self._rel(args.get("path"))
        lines = self._read_text(rel).splitlines()
        start = _int_arg(args, "start_line") or 1
        end = _int_arg(args, "end_line") or min(len(lines), start + MAX_READ_LINES - 1)
        if start < 1 or end < start:
            raise ToolError(f"need 1 <= start_line <= end_line, got {start}..{end}")
        if lines and start > len(lines):
            raise ToolError(f"{rel} has {len(lines)} lines; start_line {start} is past the end")
        end = min(end, len(lines), start + MAX_READ_LINES - 1)
        body = "\n".join(f"{n:>5}  {lines[n - 1]}" for n in range(start, end + 1))
        more = f"\n[lines {end + 1}-{len(lines)} not shown; use start_line]" if end < len(lines) else ""
        return f"{rel} (lines {start}-{end} of {len(lines)}):\n{body}{more}"

    async def _search(self, args: dict[str, Any]) -> str:
        """grep -rn with Python regexes, run in the sandbox as its own process: a pattern that
        backtracks catastrophically is killed at SEARCH_WALL_S instead of holding the event loop
        (`re` keeps the GIL, so a thread would not help)."""
        pattern = string_argument(args, "pattern")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ToolError(f"invalid regular expression {pattern!r}: {exc}") from None
        scope = self._rel(args["path"]) if args.get("path") not in (None, "", ".") else "."
        files = [f for f in self._sandbox.list_files() if scope == "." or f == scope or f.startswith(scope + "/")]
        request = json.dumps({"pattern": pattern, "files": files, "max": MAX_SEARCH_RESULTS})
        # -I: the workspace is not on sys.path, so a file there cannot shadow `re` or `json`
        result = await self._sandbox.run([sys.executable, "-I", "-c", SEARCH_SCRIPT], stdin=request,
                                         limits=make_limits(SEARCH_WALL_S))  # fmt: skip
        if result.timed_out or result.exit_code != 0:
            if result.timed_out or "Killed" in result.stderr or result.exit_code < 0:
                raise ToolError(
                    f"the search took longer than {SEARCH_WALL_S:.0f} s and was stopped; simplify the pattern "
                    "(nested quantifiers such as (a+)+ backtrack exponentially) or narrow the path"
                )
            raise ToolError(f"the search failed: {result.stderr[-300:]}")
        hits = result.stdout.splitlines()
        if len(hits) >= MAX_SEARCH_RESULTS:
            note = f"[stopped after {MAX_SEARCH_RESULTS} matches; narrow the pattern or path]"
            return "\n".join(hits[:MAX_SEARCH_RESULTS]) + "\n" + note
        return "\n".join(hits) if hits else f"no matches for {pattern!r}"

    async def _edit_file(self, args: dict[str, Any]) -> str:
        rel = self._rel(args.get("path"))
        new_text = string_argument(args, "new_text")
        old_text = string_argument(args, "old_text", required=False)
        start, end = _int_arg(args, "start_line"), _int_arg(args, "end_line")
        text = self._read_text(rel)
        if old_text is not None and (start is not None or end is not None):
            raise ToolError("give either old_text or start_line/end_line, not both")
        if old_text is not None:
            if not old_text:
                raise ToolError("old_text is empty; to create a file use write_file")
            count = text.count(old_text)
            if count == 0:
                raise ToolError(
                    f"old_text was not found in {rel}; it must match the file exactly (including "
                    "indentation and whitespace). Read the file again and copy the exact lines."
                )
            if count > 1:
                raise ToolError(
                    f"old_text occurs {count} times in {rel}; include more surrounding lines to make it "
                    "unique, or use start_line/end_line"
                )
            at = text.index(old_text)
            updated = text[:at] + new_text + text[at + len(old_text) :]
            first_line = text[:at].count("\n") + 1
        elif start is not None and end is not None:
            lines = text.splitlines(keepends=True)
            if not (1 <= start <= end <= len(lines)):
                raise ToolError(f"line range {start}-{end} is not within {rel} (1-{len(lines)})")
            replacement = new_text if not new_text or new_text.endswith("\n") else new_text + "\n"
            updated = "".join(lines[: start - 1]) + replacement + "".join(lines[end:])
            first_line = start
        else:
            raise ToolError("give old_text (exact text to replace) or both start_line and end_line")
        self._sandbox.write_file(rel, updated)
        shown = updated.splitlines()[max(0, first_line - 3) : first_line + new_text.count("\n") + 3]
        snippet = "\n".join(f"{n:>5}  {line}" for n, line in enumerate(shown, start=max(1, first_line - 2)))
        return f"edited {rel}; the region now reads:\n{snippet}"

    async def _write_file(self, args: dict[str, Any]) -> str:
        rel = self._rel(args.get("path"))
        content = string_argument(args, "content")
        try:
            self._sandbox.write_file(rel, content)
        except SandboxError as exc:
            raise ToolError(f"cannot write {rel!r}: {exc}") from None
        return f"wrote {rel} ({len(content.splitlines())} lines)"

    async def _run_shell(self, args: dict[str, Any]) -> str:
        command = string_argument(args, "command")
        if not command.strip():
            raise ToolError("command is empty")
        result = await self._sandbox.run(command, limits=make_limits(SHELL_WALL_S))
        return clip_observation(result.observation())

    async def _submit(self, args: dict[str, Any]) -> str:
        assert self.task is not None
        kind = self.task.data["kind"]
        if kind == "write_test":
            verdict = await self._verify_written_test()
        elif kind == "perf":
            verdict = await self._verify_perf()
        else:  # bugfix, feature, merged: hidden f2p + p2p tests
            verdict = await self._verify_fix()
        if not self._sandbox.isolated:  # only with the explicit opt-in (_sandbox.py)
            verdict = verdict.model_copy(update={"evidence": {**verdict.evidence, "unhidden": UNHIDDEN_NOTE}})
        self._verdict = verdict
        return "Submitted. The episode is over."

    # --- verification ----------------------------------------------------------------------

    def _package_files(self) -> dict[str, str]:
        """The agent's copy of the package's files (only those: nothing else it wrote is scored)."""
        assert self.task is not None
        files: dict[str, str] = {}
        for rel in package_by_dist(self.task.data["package"]).workspace_files():
            try:
                files[rel] = self._sandbox.read_file(rel)
            except FileNotFoundError:
                continue  # a deleted file simply fails the import
        return files

    async def _run_hidden_tests(self, files: dict[str, str]) -> tuple[SuiteRun, dict[str, Any]]:
        """The hidden suite on `files`: the package is imported only by the sandboxed worker, which
        never sees test names or expected values; the outcomes are decided here (judge.py)."""
        task = self.task
        assert task is not None
        run = await judge_tests(files, suite_text(task.data["suite"]), wall_s=VERIFY_WALL_S)
        f2p, p2p = task.data["f2p"], task.data["p2p"]
        failing = sorted(n for n in [*f2p, *p2p] if not run.passed(n))
        return run, {"failing": failing, "problem": run.problem}

    async def _verify_fix(self) -> Verdict:
        task = self.task
        assert task is not None
        run, evidence = await self._run_hidden_tests(self._package_files())
        checks = {"f2p_passed": fraction_passed(task.data["f2p"], _passed(run)),
                  "p2p_passed": fraction_passed(task.data["p2p"], _passed(run))}  # fmt: skip
        return kind_verdict(task.data["kind"], checks, tampering=run.tampering, evidence=evidence)

    async def _verify_perf(self) -> Verdict:
        """All tests first; only a candidate that keeps them is timed (the slow version runs beside
        it, interleaved, by the host's clock: perf.py)."""
        task = self.task
        assert task is not None
        files = self._package_files()
        run, evidence = await self._run_hidden_tests(files)
        p2p = fraction_passed(task.data["p2p"], _passed(run))
        if p2p < 1.0 or run.tampering:
            evidence["speedup"] = "not measured: the tests do not all pass"
            return kind_verdict("perf", {"p2p_passed": p2p, "speedup_ok": 0.0}, tampering=run.tampering,
                                evidence=evidence)
        bench = task.data["benchmark"]
        source = benchmark_source(Bench(bench["setup"], tuple(bench["calls"])), bench["digests"])
        rule = PerfRule(**task.data.get("perf_rule", {}))
        timed = await measure(buggy_files(task), files, source, list(bench["digests"]), rule)
        speedup_ok = timed.correct and timed.measurement.passes(rule)
        evidence.update(min_speedup=rule.min_speedup, results_match=timed.correct,
                        benchmark_problems=list(timed.problems))
        return kind_verdict("perf", {"p2p_passed": p2p, "speedup_ok": float(speedup_ok)}, tampering=run.tampering,
                            perf=timed.measurement, evidence=evidence)

    async def _verify_written_test(self) -> Verdict:
        task = self.task
        assert task is not None
        try:
            test_source = self._sandbox.read_file(ISSUE_TEST_FILE)
        except FileNotFoundError:
            return kind_verdict("write_test", {"passes_on_fixed": 0.0, "fails_on_buggy": 0.0},
                                evidence={"reason": f"no {ISSUE_TEST_FILE} was written"})
        test_file = {ISSUE_TEST_FILE: test_source}
        on_fixed = await run_tests({**original_files(task), **test_file}, [ISSUE_TEST_FILE], wall_s=VERIFY_WALL_S)
        on_buggy = await run_tests({**buggy_files(task), **test_file}, [ISSUE_TEST_FILE], wall_s=VERIFY_WALL_S)
        passes_fixed = _all_pass(on_fixed)
        fails_buggy = bool(on_buggy.failing()) or on_buggy.timed_out
        return kind_verdict(
            "write_test",
            {"passes_on_fixed": float(passes_fixed), "fails_on_buggy": float(fails_buggy)},
            evidence={
                "tests": sorted(on_fixed.results),
                "failing_on_fixed": on_fixed.failing(),
                "failing_on_buggy": on_buggy.failing(),
                "problem": on_fixed.problem or on_buggy.problem,
            },
        )


def _passed(run: SuiteRun) -> dict[str, bool]:
    return {name: result.passed for name, result in run.results.items()}


def _revert_hunks(task: Task) -> list[ToolCall]:
    """The gold edits of a feature, perf or merged task: each hunk back to the original (the
    function written back, the fast code restored, both bugs fixed), by exact text where it is
    unique, else the whole original module."""
    data = check_task(task)
    current = buggy_files(task)[data["module"]]
    calls: list[ToolCall] = []
    for mutation in sorted(mutations_of(task), key=lambda m: m.line_start, reverse=True):
        if current.count(mutation.buggy) != 1:
            content = original_files(task)[data["module"]]
            return [ToolCall(name="write_file", arguments={"path": data["module"], "content": content})]
        current = current.replace(mutation.buggy, mutation.original)
        calls.append(ToolCall(name="edit_file", arguments={"path": data["module"], "old_text": mutation.buggy,
                                                           "new_text": mutation.original}))
    return calls


def _all_pass(run: SuiteRun) -> bool:
    """At least one test ran, and every test passed (a file that fails to import does not)."""
    return bool(run.results) and COLLECT not in run.results and not run.failing() and not run.problem
