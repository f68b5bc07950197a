"""Building and running a Go package's tests, and its benchmark program, in fresh sandboxes, and
reading the results so that code under test cannot forge them.

The code under test runs inside the test binary, so it can print anything, exit early or swap
os.Stdout. The verdict therefore trusts only what it cross-checks:
  * a TestMain added at build time (a file the verifier writes, never the agent) prints one of two
    random per-run tokens after `m.Run()` (code in the same process could in principle dig them out
    of its binary; they carry no prefix to find, and a forged token must still agree with the lines): PASS_TOKEN when the testing package itself says every
    selected test passed, FAIL_TOKEN otherwise, then exits with m.Run's code;
  * the host reads `-test.v` output and requires, per top-level test, exactly one `=== RUN` and
    exactly one `--- PASS/FAIL` line; a duplicate, a result without its RUN, a token seen twice,
    a token that disagrees with the per-test lines or with the process exit status, or exit status 0
    without any token (an `os.Exit(0)` before the summary) is tampering, and tampering scores 0;
  * a test binary that dies mid-test (a panic) fails the running test, and the remaining tests
    are run again without it, so one panic does not hide the results of the others.
Only the files the caller names are copied in, laid out as a GOPATH tree; the toolchain runs
with GO111MODULE=off, no proxy, cgo off, so no go.mod, go.work, vendor or `replace` is consulted.
"""

from __future__ import annotations

import functools
import re
import secrets
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import forgerl
from forgerl.envs.sandbox import BACKENDS, Limits, Sandbox, available_backend, create_sandbox
from forgerl.envs.swe_go.packages import GOCODE, PACKAGES
from forgerl.errors import SandboxError

GOPATH_DIR = "gopath"
BUILD_DIR = ".forgerl"
GO_ENV = (
    "export GO111MODULE=off GOPATH=\"{root}/{gopath}:/usr/share/gocode\" GOPROXY=off GOTOOLCHAIN=local GOFLAGS= "
    "GONOSUMDB= GOWORK=off CGO_ENABLED=0 GOCACHE=\"{root}/.cache/go-build\" GOTELEMETRY=off GOENV=off; "
)
"""Offline GOPATH mode: no modules (so no go.mod, go.work, vendor or `replace`), no proxy, no cgo,
the build cache inside the workspace (a sandbox's /tmp lives only as long as one command)."""
MAIN_FILE = "zz_forgerl_main_test.go"
MAIN_TEMPLATE = """package {name}

import (
\t"fmt"
\t"os"
\t"testing"
)

func TestMain(m *testing.M) {{
\tcode := m.Run()
\tif code == 0 {{
\t\tfmt.Println("\\n{ok}")
\t}} else {{
\t\tfmt.Println("\\n{bad}")
\t}}
\tos.Exit(code)
}}
"""
BUILD_MEMORY_MB = 4096
"""The Go compiler and runtime reserve more address space than Python (RLIMIT_AS counts it)."""
RUNAWAY_SIGNS = ("panic: test timed out after", "out of memory")
"""What a test binary prints to stderr when a test hung (Go's -test.timeout) or exhausted memory: a
runaway, whose outcome (which limit fires first, what it printed) depends on the machine's load."""
_RESULT = re.compile(r"^--- (PASS|FAIL|SKIP): (\S+) \(")
_RUN = re.compile(r"^=== RUN   (\S+)$")


def go_limits(wall_s: float) -> Limits:
    return Limits(wall_s=wall_s, cpu_s=wall_s * 2, memory_mb=BUILD_MEMORY_MB, max_procs=128, max_output_bytes=4_000_000)


@functools.cache
def hidden_paths() -> tuple[str, ...]:
    """What no swe-go sandbox may read: the pristine package sources (the answer key) and
    forgerl's own package and task data."""
    root = Path(forgerl.__file__).resolve()
    data = root.parents[2] / "data" / "swe_go"
    return tuple(str(p) for p in [*(GOCODE / p.import_path for p in PACKAGES), root.parent, data] if p.exists())


def new_sandbox(files: dict[str, str], wall_s: float) -> Sandbox:
    backend = available_backend()
    if not BACKENDS[backend].can_hide:
        raise SandboxError(
            "swe-go needs a sandbox that can hide the installed package sources (bubblewrap or user "
            f"namespaces), but only the unisolated {backend!r} backend works here; run scripts/install_system_deps.sh"
        )
    return create_sandbox(files, limits=go_limits(wall_s), backend=backend, hidden_paths=hidden_paths())


def gopath_files(import_path: str, files: dict[str, str], gopath: str = GOPATH_DIR) -> dict[str, str]:
    return {f"{gopath}/src/{import_path}/{name}": text for name, text in files.items()}


@dataclass(frozen=True)
class GoTestRun:
    """Per-test pass/fail of one verification; `problem` says why there is none (build failure,
    timeout); `tampering` lists the signs that code under test forged its report."""

    passed: dict[str, bool]
    problem: str | None = None
    tampering: tuple[str, ...] = ()
    build_output: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    messages: dict[str, str] = field(default_factory=dict)  # a failing test's output (for the issue)
    runaway: bool = False  # a test hit its timeout or ran out of memory: the run says nothing about results
    unstable: tuple[str, ...] = ()  # tests whose outcome or failure output changed between `repeats` runs

    def failing(self) -> list[str]:
        return sorted(n for n, ok in self.passed.items() if not ok)

    def stable_failing(self) -> list[str]:
        """The failing tests that failed alike in every repeated run: the only ones a task is built on."""
        return [n for n in self.failing() if n not in self.unstable]

    def all_passed(self, names: list[str]) -> bool:
        return not self.tampering and all(self.passed.get(n, False) for n in names)


@dataclass(frozen=True)
class _Pass:
    results: dict[str, bool]
    running: str | None
    last: str | None
    token: str | None
    tampering: tuple[str, ...]
    messages: dict[str, str]


def read_verbose(stdout: str, expected: set[str], ok: str, bad: str, exit_code: int) -> _Pass:
    """One run's per-test results from `-test.v` output, with every inconsistency named."""
    results: dict[str, bool] = {}
    started: list[str] = []
    tampering: list[str] = []
    tokens = [line.strip() for line in stdout.splitlines() if line.strip() in (ok, bad)]
    output: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        run = _RUN.match(line)
        if started and started[-1] not in results and line.strip() not in (ok, bad):
            output.setdefault(started[-1], []).append(line)
        if run and "/" not in run.group(1):
            if run.group(1) in started:
                tampering.append(f"test {run.group(1)} started twice")
            started.append(run.group(1))
            continue
        result = _RESULT.match(line)
        if result is None or "/" in result.group(2):
            continue
        name = result.group(2)
        if name in results:
            tampering.append(f"test {name} reported twice")
        elif name not in started:
            tampering.append(f"a result for {name} before it started")
        elif name not in expected:
            tampering.append(f"a result for {name}, which was not selected")
        results[name] = result.group(1) != "FAIL"  # a skip is not a failure
    token = tokens[-1] if tokens else None
    if len(tokens) > 1:
        tampering.append("the test summary appeared more than once")
    if token is None and exit_code == 0:
        tampering.append("the test binary exited with status 0 before its summary (os.Exit in the code under test?)")
    if token == ok and (exit_code != 0 or not all(results.values()) or set(results) != set(started)):
        tampering.append("the summary says pass but the tests or the exit status do not")
    if token == bad and exit_code != 0 and results and all(results.values()) and set(results) == set(started):
        tampering.append("every test line says PASS but the testing package reported a failure")
    running = next((n for n in reversed(started) if n not in results), None)
    messages = {n: _stable("\n".join(output.get(n, [])))[-2000:] for n, p in results.items() if not p}
    if running is not None:
        messages[running] = _stable("\n".join(output.get(running, [])))[-2000:]
    return _Pass(results, running, started[-1] if started else None, token, tuple(tampering), messages)


_DURATION = re.compile(r" \(\d+\.\d+s\)")


def _stable(text: str) -> str:
    """Test output without the durations Go prints, so an issue written from it is reproducible."""
    return _DURATION.sub("", text)


def panic_summary(stderr: str) -> str:
    """The `panic:` lines of a crash, without goroutine numbers and addresses (which vary run to run)."""
    lines = [line.strip().removesuffix(" [recovered]") for line in stderr.splitlines() if line.strip().startswith("panic:")]
    return "\n".join(dict.fromkeys(lines))


async def build_test_binary(sandbox: Sandbox, import_path: str, name: str, wall_s: float) -> tuple[bool, str, str, str]:
    """Compile the package's test binary with the verifier's TestMain; (ok, output, ok_token, bad_token)."""
    # bare random hex, no telltale prefix: code scanning its own binary for the summary tokens finds
    # two look-alike strings and cannot tell which one means "pass" (printing both is tampering)
    ok, bad = secrets.token_hex(20), secrets.token_hex(20)
    sandbox.write_file(f"{GOPATH_DIR}/src/{import_path}/{MAIN_FILE}", MAIN_TEMPLATE.format(name=name, ok=ok, bad=bad))
    cmd = GO_ENV.format(root="$PWD", gopath=GOPATH_DIR) + f"mkdir -p {BUILD_DIR} && go test -c -vet=off -o {BUILD_DIR}/pkg.test {import_path}"
    res = await sandbox.run(cmd, limits=go_limits(wall_s))
    return res.exit_code == 0 and not res.timed_out, (res.stdout + res.stderr)[-3000:], ok, bad


async def run_go_tests(
    files: dict[str, str], import_path: str, name: str, tests: list[str], *, wall_s: float = 120.0,
    test_timeout_s: float = 20.0, repeats: int = 1,
) -> GoTestRun:
    """Build the package from `files` (name -> text, code and test files) in a fresh sandbox and run
    the top-level `tests`; see the module docstring for what is trusted. With `repeats` > 1, a run
    that finishes cleanly with failing tests is repeated (same binary) and merged by `merge_repeats`
    — generation's guard against tests that draw random inputs or iterate maps."""
    sandbox = new_sandbox(gopath_files(import_path, files), wall_s)
    try:
        built, output, ok, bad = await build_test_binary(sandbox, import_path, name, wall_s)
        if not built:
            return GoTestRun({t: False for t in tests}, problem="the package or its tests do not build", build_output=output)
        runs = [await _run_binary(sandbox, set(tests), ok, bad, wall_s, test_timeout_s)]
        if _clean(runs[0]) and runs[0].failing():
            for _ in range(repeats - 1):
                runs.append(await _run_binary(sandbox, set(tests), ok, bad, wall_s, test_timeout_s))
        return merge_repeats(runs)
    finally:
        await sandbox.close()


def _clean(run: GoTestRun) -> bool:
    return run.problem is None and not run.tampering and not run.runaway


def merge_repeats(runs: list[GoTestRun]) -> GoTestRun:
    """One result from repeated runs of the same binary: the first run whose result is not clean
    (a problem, tampering, a runaway) if any; else a test fails when it failed in any run, and
    `unstable` names the tests whose outcome or failure output changed between runs — tests that
    draw random inputs (testing/quick seeds from the clock), iterate a Go map (random order) or
    panic at a random index. Such a test's variation shows in nearly every sample of enough runs
    (random strings never repeat; Go starts a small map's iteration at a random one of 8 slots, so
    one order can come up 7 times in 8, and 30 runs still see the other with 98% odds), while
    whether it happens to fail in all of them does not, so generation builds tasks (f2p, issue,
    gold test) only on the stable failures."""
    dirty = next((r for r in runs if not _clean(r)), None)
    if dirty is not None:
        return dirty
    first = runs[0]
    names = sorted({t for r in runs for t in r.passed})
    seen = {t: {(r.passed.get(t), "" if r.passed.get(t) else r.messages.get(t, "")) for r in runs} for t in names}
    passed = {t: all(r.passed.get(t, False) for r in runs) for t in names}
    return replace(first, passed=passed, unstable=tuple(t for t in names if len(seen[t]) > 1))


async def _run_binary(sandbox: Sandbox, tests: set[str], ok: str, bad: str, wall_s: float, test_timeout_s: float) -> GoTestRun:
    passed: dict[str, bool] = {}
    tampering: list[str] = []
    notes: list[str] = []
    messages: dict[str, str] = {}
    runaway = False
    deadline = time.monotonic() + wall_s
    while len(passed) < len(tests):
        todo = sorted(tests - set(passed))
        pattern = "^(" + "|".join(re.escape(t) for t in todo) + ")$"
        left = deadline - time.monotonic()
        if left <= 1:
            passed.update({t: False for t in todo})
            return GoTestRun(passed, problem="the tests took longer than the time limit", tampering=tuple(tampering),
                             runaway=True)  # fmt: skip
        argv = [f"{BUILD_DIR}/pkg.test", "-test.v", "-test.count=1", f"-test.timeout={test_timeout_s:.0f}s",
                "-test.run", pattern]  # fmt: skip
        res = await sandbox.run(argv, limits=go_limits(min(left, test_timeout_s + 10)))
        one = read_verbose(res.stdout, set(todo), ok, bad, res.exit_code)
        tampering += one.tampering
        messages.update(one.messages)
        passed.update({n: p for n, p in one.results.items() if n in tests})
        if one.token is not None or tampering:
            break
        runaway = runaway or res.timed_out or any(sign in res.stderr for sign in RUNAWAY_SIGNS)
        crashed = one.running or one.last
        if crashed is not None:  # the panic's message went to stderr
            messages[crashed] = (messages.get(crashed, "") + "\n" + panic_summary(res.stderr)).strip()  # the binary finished (or lied): what did not report, failed
        if one.running is None and not one.results:
            notes.append(f"the test binary died before any test (exit {res.exit_code}): {res.stderr[-300:]}")
            break
        if one.running is not None:
            passed[one.running] = False
            notes.append(f"{one.running} crashed the test binary (exit {res.exit_code}, timed out: {res.timed_out})")
    for t in tests - set(passed):
        passed[t] = False
    return GoTestRun(dict(sorted(passed.items())), tampering=tuple(dict.fromkeys(tampering)), notes=tuple(notes),
                     messages=messages, runaway=runaway)
