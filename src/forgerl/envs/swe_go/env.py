"""The swe-go environment: a sandboxed copy of a real Go package with an injected bug (or a removed
function, or a slowdown), swe's file tools and a shell with the Go toolchain, and the package's own
hidden tests as the verifier.

The tools are swe-bugfix's (read_file, search, edit_file, write_file, run_shell, submit); only the
shell differs: it runs with Go's offline GOPATH setup, with the workspace linked in at its import
path, so `go build`, `go vet` and `go test` work in the workspace root. Scoring happens at submit in
FRESH sandboxes holding only the package's non-test `.go` files (by the names the package ships)
copied from the workspace, plus the hidden tests (gorun.py): a go.mod, go.work, vendor directory,
`_test.go` file or TestMain the agent planted never reaches the verifier.
"""

from __future__ import annotations

import shlex
from typing import Any

from forgerl.envs.base import Task, Verdict
from forgerl.envs.swe.env import RUN_SHELL, TOOLS, SweEnv
from forgerl.envs.swe.tasktypes import CHECKS, PerfRule, check_kind, fraction_passed, kind_verdict
from forgerl.envs.swe_go import gosrc
from forgerl.envs.swe_go.gorun import GO_ENV, go_limits, new_sandbox, run_go_tests
from forgerl.envs.swe_go.packages import code_files, package_by_path, sha256, test_files
from forgerl.envs.swe_go.perf import measure
from forgerl.envs.swe_go.pipeline import FAMILY, ISSUE_TEST_FILE, apply_edits
from forgerl.envs.tool_io import clip_observation, string_argument
from forgerl.errors import ConfigError, ToolError
from forgerl.types import ToolCall, ToolSpec

SHELL_WALL_S = 90.0
VERIFY_WALL_S = 180.0
REQUIRED_KEYS = ("kind", "language", "package", "function", "source_sha256", "edits", "f2p", "p2p", "issue")
SYSTEM_PROMPT = (
    "You are a software engineer working in a sandboxed Go repository. Use the tools to read, search "
    "and edit files and to run shell commands. Paths are relative to the repository root. When the "
    "work is done, call submit exactly once."
)
GO_RUN_SHELL = RUN_SHELL.model_copy(update={"description": (
    f"Run a shell command in the package directory (time limit {SHELL_WALL_S:.0f} s, no network), "
    "e.g. `go build ./...`, `go vet .`, `go test -run TestX -v .`."
)})  # fmt: skip


def check_task(task: Task) -> dict[str, Any]:
    missing = [k for k in REQUIRED_KEYS if k not in task.data]
    if missing or task.data.get("language") != "go":
        raise ConfigError(f"task {task.id!r} is not an swe-go task: data lacks {missing or ['language=go']}")
    check_kind(task.data["kind"])
    return task.data


def edits_of(task: Task) -> list[gosrc.Edit]:
    return [gosrc.Edit(**e) for e in check_task(task)["edits"]]


def original_code(task: Task) -> dict[str, str]:
    """The package's non-test files, bug-free, checked against the hashes the task was made from."""
    data = check_task(task)
    files = dict(code_files(data["package"]))
    for name, digest in data["source_sha256"].items():
        if sha256(files.get(name, "")) != digest:
            raise ConfigError(f"{name} of the installed {data['package']} differs from the file task {task.id!r} was "
                              f"generated from; install the Debian package {data.get('deb')} this task set was built "
                              "with, or regenerate it (python -m forgerl.envs.swe_go.build --out data/swe_go)")  # fmt: skip
    return files


def buggy_code(task: Task) -> dict[str, str]:
    return apply_edits(original_code(task), edits_of(task))


def shell_prefix(import_path: str) -> str:
    """Links the workspace in at its import path inside a private GOPATH (.gopath, which `./...`
    skips, as it skips every dot directory) and runs the command from there."""
    link = shlex.quote(f".gopath/src/{import_path}")
    parent = shlex.quote(f".gopath/src/{import_path.rsplit('/', 1)[0]}")
    return f'ws="$PWD"; mkdir -p {parent} && ln -sfn "$ws" {link} && cd {link} && ' + GO_ENV.format(root="$ws", gopath=".gopath")


class SweGoEnv(SweEnv):
    family = FAMILY

    def tools(self) -> list[ToolSpec]:
        return [GO_RUN_SHELL if t.name == "run_shell" else t for t in TOOLS]

    system_prompt = SYSTEM_PROMPT

    def _workspace_files(self, task: Task) -> dict[str, str]:
        return buggy_code(task)  # ConfigError when the sources are missing or differ

    def _new_sandbox(self, files: dict[str, str]) -> Any:
        return new_sandbox(files, SHELL_WALL_S)

    def gold_solution(self, task: Task) -> list[list[ToolCall]]:
        data = check_task(task)
        if data["kind"] == "write_test":
            write = {"path": ISSUE_TEST_FILE, "content": data["gold_test"]}
            return [[ToolCall(name="write_file", arguments=write)], [ToolCall(name="submit", arguments={})]]
        original, buggy = original_code(task), buggy_code(task)
        steps = []
        for edit in edits_of(task):
            fixed = {f.name: f for f in gosrc.functions(edit.file, original[edit.file])}
            for fn in gosrc.functions(edit.file, buggy[edit.file]):
                if fn.start <= edit.start <= fn.end and fn.name in fixed:
                    old = gosrc.function_source(buggy[edit.file], fn)
                    new = gosrc.function_source(original[edit.file], fixed[fn.name])
                    steps.append([ToolCall(name="edit_file", arguments={"path": edit.file, "old_text": old, "new_text": new})])
        return [*steps, [ToolCall(name="submit", arguments={})]]

    async def _run_shell(self, args: dict[str, Any]) -> str:
        assert self.task is not None
        command = string_argument(args, "command")
        if not command or not command.strip():
            raise ToolError("command is empty")
        full = shell_prefix(self.task.data["package"]) + command
        result = await self._sandbox.run(full, limits=go_limits(SHELL_WALL_S))
        return clip_observation(result.observation())

    async def _submit(self, args: dict[str, Any]) -> str:
        assert self.task is not None
        verdict = await (self._verify_written_test() if self.task.data["kind"] == "write_test" else self._verify_code())
        self._verdict = verdict
        return "Submitted. The episode is over."

    # --- verification ----------------------------------------------------------------------

    def _workspace_code(self) -> dict[str, str]:
        """Only the package's own non-test file names, read back from the workspace."""
        files: dict[str, str] = {}
        for name in code_files(self.task.data["package"]):  # type: ignore[union-attr]
            try:
                files[name] = self._sandbox.read_file(name)
            except (FileNotFoundError, UnicodeDecodeError, IsADirectoryError):
                continue  # a deleted or garbled file fails the build
        return files

    async def _verify_code(self) -> Verdict:
        task = self.task
        assert task is not None
        data, kind = task.data, task.data["kind"]
        package = package_by_path(data["package"])
        candidate = self._workspace_code()
        names = sorted(set(data["f2p"]) | set(data["p2p"]))
        run = await run_go_tests({**candidate, **test_files(package.import_path)}, package.import_path, package.name,
                                 names, wall_s=VERIFY_WALL_S)  # fmt: skip
        evidence: dict[str, Any] = {"failing": run.failing(), "problem": run.problem, "notes": list(run.notes)}
        if run.problem:
            evidence["build_output"] = run.build_output[-1500:]
        checks = {"f2p_passed": fraction_passed(data["f2p"], run.passed), "p2p_passed": fraction_passed(data["p2p"], run.passed)}
        if kind != "perf":
            return kind_verdict(kind, checks, tampering=run.tampering, evidence=evidence)
        rule = PerfRule(**data["perf_rule"])
        speedup_ok, measurement = 0.0, None
        if candidate == buggy_code(task):
            evidence["bench_problem"] = "the slow code is unchanged"  # identical code cannot be faster: not timed
        elif checks["p2p_passed"] == 1.0 and not run.tampering:
            bench = await measure(package, data["bench"], buggy_code(task), candidate, original_code(task), rule)
            measurement = bench.measurement
            speedup_ok = float(measurement is not None and bench.outputs_match and measurement.passes(rule))
            evidence["bench_problem"] = bench.problem
        perf_checks = {name: checks.get(name, speedup_ok) for name in CHECKS["perf"]}
        return kind_verdict(kind, perf_checks, tampering=run.tampering, perf=measurement, evidence=evidence)

    async def _verify_written_test(self) -> Verdict:
        task = self.task
        assert task is not None
        package = package_by_path(task.data["package"])
        try:
            test_source = self._sandbox.read_file(ISSUE_TEST_FILE)
        except (FileNotFoundError, UnicodeDecodeError, IsADirectoryError):
            return kind_verdict("write_test", {"passes_on_fixed": 0.0, "fails_on_buggy": 0.0},
                                evidence={"reason": f"no {ISSUE_TEST_FILE} was written"})  # fmt: skip
        tests = list(gosrc.test_calls({ISSUE_TEST_FILE: test_source}))
        if not tests:
            return kind_verdict("write_test", {"passes_on_fixed": 0.0, "fails_on_buggy": 0.0},
                                evidence={"reason": f"{ISSUE_TEST_FILE} holds no func TestXxx(t *testing.T)"})  # fmt: skip
        mine = {ISSUE_TEST_FILE: test_source}
        on_fixed = await run_go_tests({**original_code(task), **mine}, package.import_path, package.name, tests, wall_s=VERIFY_WALL_S)
        on_buggy = await run_go_tests({**buggy_code(task), **mine}, package.import_path, package.name, tests, wall_s=VERIFY_WALL_S)
        passes = on_fixed.problem is None and on_fixed.all_passed(tests)
        fails = on_buggy.problem is None and bool(on_buggy.failing()) and not on_buggy.tampering
        return kind_verdict(
            "write_test", {"passes_on_fixed": float(passes), "fails_on_buggy": float(fails)},
            tampering=[*on_fixed.tampering, *on_buggy.tampering],
            evidence={"tests": tests, "failing_on_fixed": on_fixed.failing(), "failing_on_buggy": on_buggy.failing(),
                      "problem": on_fixed.problem or on_buggy.problem},
        )  # fmt: skip
