"""The swe-js environment: a sandboxed copy of a real npm package with a bug, a stub or a
slowdown injected, swe's file tools and shell (with Node.js, no network), and hidden tests.

The tools are swe-bugfix's (`SweEnv`, inherited: path checks, bounded reads, regex search in a
subprocess); what differs is the workspace, the gold path and scoring. Scoring happens at `submit`
in FRESH sandboxes holding only what the verifier names: the package's own JavaScript files read
from the workspace, plus forgerl's test worker. Nothing else the agent left there (a package.json
with a test script, a planted test file, node_modules, a .mocharc) is copied, and the hidden
expectations never enter a sandbox at all (judge.py). Every kind scores through `kind_verdict`.
"""

from __future__ import annotations

from typing import Any

from forgerl.envs.base import Task, Verdict
from forgerl.envs.swe.env import EDIT_FILE, READ_FILE, SEARCH, SHELL_WALL_S, SUBMIT, SweEnv
from forgerl.envs.swe.tasktypes import PerfMeasurement, PerfRule, fraction_passed, kind_verdict
from forgerl.envs.swe_js._sandbox import UNHIDDEN_NOTE, new_sandbox
from forgerl.envs.swe_js.issue import ISSUE_TEST_FILE, test_file
from forgerl.envs.swe_js.judge import run_benchmarks, run_suite, run_written_test
from forgerl.envs.swe_js.packages import installed_sources, load_suite
from forgerl.envs.swe_js.pipeline import FAMILY
from forgerl.envs.swe_js.workspace import agent_workspace, changed_files, check_task, injected_of, original_files
from forgerl.envs.tool_io import object_schema
from forgerl.errors import VerifierError
from forgerl.types import ToolCall, ToolSpec

VERIFY_WALL_S = 120.0
RUN_SHELL = ToolSpec(
    name="run_shell",
    description=f"Run a shell command in the repository root (time limit {SHELL_WALL_S:.0f} s, no network), "
                "e.g. node --test test/.",
    parameters=object_schema({"command": {"type": "string"}}, ["command"]),
)
WRITE_FILE = ToolSpec(
    name="write_file",
    description="Create a file, or overwrite it, with the given content.",
    parameters=object_schema({"path": {"type": "string", "description": "file path relative to the repository root"},
                        "content": {"type": "string"}}, ["path", "content"]),
)
TOOLS = [READ_FILE, SEARCH, EDIT_FILE, WRITE_FILE, RUN_SHELL, SUBMIT]


class SweJsEnv(SweEnv):
    family = FAMILY

    def tools(self) -> list[ToolSpec]:
        return list(TOOLS)

    def _workspace_files(self, task: Task) -> dict[str, str]:
        check_task(task)
        return agent_workspace(task)  # ConfigError on a missing install or a wrong package version

    def _new_sandbox(self, files: dict[str, str]) -> Any:
        return new_sandbox(files, SHELL_WALL_S)

    def gold_solution(self, task: Task) -> list[list[ToolCall]]:
        data = check_task(task)
        if data["kind"] == "write_test":
            suite = load_suite(data["package"])
            content = test_file(suite.prelude, suite.select(data["f2p"]))
            return [[ToolCall(name="write_file", arguments={"path": ISSUE_TEST_FILE, "content": content})],
                    [ToolCall(name="submit", arguments={})]]
        files = changed_files(task)
        edits = []
        # top-down within a file: a hunk's line numbers are the original file's, which hold for the
        # lines below the hunks already reverted (a bug may change the number of lines)
        for item in sorted(injected_of(task), key=lambda i: (i.module, i.mutation.line_start)):
            m = item.mutation
            if files[item.module].count(m.buggy) == 1:
                edits.append({"path": item.module, "old_text": m.buggy, "new_text": m.original})
            else:
                edits.append({"path": item.module, "start_line": m.line_start, "end_line": m.buggy_line_end,
                              "new_text": m.original})
            files[item.module] = m.revert(files[item.module])
        return [[ToolCall(name="edit_file", arguments=e)] for e in edits] + [[ToolCall(name="submit", arguments={})]]

    async def _submit(self, args: dict[str, Any]) -> str:
        assert self.task is not None
        kind = self.task.data["kind"]
        if kind == "write_test":
            verdict = await self._verify_written_test()
        else:
            verdict = await self._verify_package(kind)
        if not self._sandbox.isolated:
            verdict = verdict.model_copy(update={"evidence": {**verdict.evidence, "unhidden": UNHIDDEN_NOTE}})
        self._verdict = verdict
        return "Submitted. The episode is over."

    def _package_from_workspace(self) -> dict[str, str]:
        """The package's own JavaScript files, as the agent left them; nothing else."""
        assert self.task is not None
        files: dict[str, str] = {}
        for rel in installed_sources(self.task.data["package"]):
            try:
                files[rel] = self._sandbox.read_file(rel)
            except (FileNotFoundError, UnicodeDecodeError, IsADirectoryError):
                continue  # a deleted or unreadable file simply fails the tests that load it
        return files

    async def _verify_package(self, kind: str) -> Verdict:
        task = self.task
        assert task is not None
        data = task.data
        suite = load_suite(data["package"])
        candidate = self._package_from_workspace()
        run = await run_suite(candidate, suite, wall_s=VERIFY_WALL_S)
        passed = {name: run.passed(name) for name in suite.names()}
        tampering = list(run.tampering)
        failing = sorted(n for n in [*data["f2p"], *data["p2p"]] if not passed.get(n))
        evidence: dict[str, Any] = {"failing": failing[:50], "problem": run.problem}
        p2p = fraction_passed(data["p2p"], passed)
        if kind != "perf":
            checks = {"f2p_passed": fraction_passed(data["f2p"], passed), "p2p_passed": p2p}
            return kind_verdict(kind, checks, tampering=tampering, evidence=evidence)
        perf = data["perf"]
        if p2p < 1.0 or tampering:
            evidence["perf"] = "not timed: the tests did not all pass"
            return kind_verdict(kind, {"p2p_passed": p2p, "speedup_ok": 0.0}, tampering=tampering, evidence=evidence)
        slow_files = changed_files(task)
        if all(candidate.get(rel) == text for rel, text in slow_files.items()):
            evidence["perf"] = "not timed: the package is the slow version, unchanged"
            return kind_verdict(kind, {"p2p_passed": p2p, "speedup_ok": 0.0}, tampering=tampering, evidence=evidence)
        rule = PerfRule(min_speedup=perf["min_speedup"], repeats=perf["repeats"])
        slow, fast = await run_benchmarks([slow_files, candidate], suite, suite.select(perf["bench"]),
                                          perf["rounds"], rule.repeats, wall_s=VERIFY_WALL_S)
        tampering += [t for t in fast.tampering if t not in tampering]
        if not slow.correct:
            raise VerifierError(f"the slow reference version's benchmark went wrong: {slow.problem}")
        measurement = PerfMeasurement(baseline_s=slow.times, candidate_s=fast.times)
        ok = fast.correct and measurement.passes(rule)
        if not fast.correct:
            evidence["benchmark"] = f"the candidate's benchmark results differ from the expected ones: {fast.problem}"
        return kind_verdict(kind, {"p2p_passed": p2p, "speedup_ok": float(ok)}, tampering=tampering,
                            perf=measurement, evidence=evidence)

    async def _verify_written_test(self) -> Verdict:
        task = self.task
        assert task is not None
        try:
            source = self._sandbox.read_file(ISSUE_TEST_FILE)
        except (FileNotFoundError, UnicodeDecodeError, IsADirectoryError):
            return kind_verdict("write_test", {"passes_on_fixed": 0.0, "fails_on_buggy": 0.0},
                                evidence={"reason": f"no readable {ISSUE_TEST_FILE} was written"})
        on_fixed = await run_written_test(original_files(task), ISSUE_TEST_FILE, source, wall_s=VERIFY_WALL_S)
        on_buggy = await run_written_test(changed_files(task), ISSUE_TEST_FILE, source, wall_s=VERIFY_WALL_S)
        checks = {"passes_on_fixed": float(on_fixed.all_pass), "fails_on_buggy": float(on_buggy.fails)}
        evidence = {"on_fixed": {"passed": on_fixed.passed, "failed": on_fixed.failed, "exit_code": on_fixed.exit_code},
                    "on_buggy": {"passed": on_buggy.passed, "failed": on_buggy.failed, "exit_code": on_buggy.exit_code}}
        return kind_verdict("write_test", checks, evidence=evidence)
