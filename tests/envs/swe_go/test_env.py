"""The swe-go environment end to end on a real Go package, and attacks on its verifier: nothing
the agent plants or prints may turn a wrong workspace into a reward."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from forgerl.envs.base import Task
from forgerl.envs.rewards import Verdict
from forgerl.envs.swe_go import SweGoEnv
from forgerl.types import ToolCall
from tests.envs.swe_go.conftest import needs_go

pytestmark = needs_go

SUBMIT = [ToolCall(name="submit", arguments={})]


def call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(name=name, arguments=arguments)


def play(task: Task, steps: list[list[ToolCall]]) -> tuple[Verdict, list[str]]:
    async def run() -> tuple[Verdict, list[str]]:
        env = SweGoEnv()
        env.reset(task)
        outputs = []
        try:
            for step in steps:
                for c in step:
                    outputs.append(await env.execute(c))
            return env.verify(None), outputs  # type: ignore[arg-type]
        finally:
            await env.close()

    return asyncio.run(run())


@pytest.mark.parametrize("kind", ["bugfix", pytest.param("write_test", marks=pytest.mark.slow)])
def test_gold_scores_one_and_noop_zero(comma_tasks: dict[str, Task], kind: str) -> None:
    task = comma_tasks[kind]
    gold, _ = play(task, SweGoEnv().gold_solution(task))
    assert gold.outcome == 1.0, (kind, gold.evidence)
    noop, _ = play(task, [SUBMIT])
    assert noop.outcome == 0.0 and noop.parts["submitted"] == 1.0, kind
    names = {"bugfix": {"f2p_passed", "p2p_passed"}, "write_test": {"passes_on_fixed", "fails_on_buggy"}}[kind]
    assert set(gold.parts) == {"submitted", "tampered", *names}


@pytest.mark.slow
def test_shell_has_an_offline_go_toolchain_and_no_answer_key(comma_tasks: dict[str, Task]) -> None:
    _, out = play(comma_tasks["bugfix"], [[
        call("run_shell", command="go build ./... && go vet . && echo BUILD-OK"),
        call("run_shell", command="cat /usr/share/gocode/src/github.com/dustin/go-humanize/comma.go || echo HIDDEN"),
        call("run_shell", command="ls *_test.go 2>/dev/null | wc -l"),
    ]])  # fmt: skip
    assert "BUILD-OK" in out[0] and "HIDDEN" in out[1] and "stdout:\n0" in out[2]


def _plant(path: str, content: str) -> list[ToolCall]:
    return [call("write_file", path=path, content=content)]


def _append_to_comma(code: str) -> list[ToolCall]:
    return [call("run_shell", command=f"cat >> comma.go <<'EOF'\n{code}\nEOF")]


@pytest.mark.slow
def test_planted_go_mod_replace_vendor_and_go_work_are_ignored(comma_tasks: dict[str, Task]) -> None:
    fixed_copy = "package humanize\n\nfunc Comma(v int64) string { return \"fake\" }\n"
    steps = [
        _plant("go.mod", "module github.com/dustin/go-humanize\n\ngo 1.19\n\nreplace github.com/dustin/go-humanize => ./vendor/h\n"),
        _plant("go.work", "go 1.19\n\nuse ./vendor/h\n"),
        _plant("vendor/h/comma.go", fixed_copy),
        SUBMIT,
    ]
    verdict, _ = play(comma_tasks["bugfix"], steps)
    assert verdict.outcome == 0.0 and verdict.parts["f2p_passed"] == 0.0


def test_planted_test_files_and_test_main_never_reach_the_verifier(comma_tasks: dict[str, Task]) -> None:
    planted = ('package humanize\n\nimport (\n\t"os"\n\t"testing"\n)\n\n'
               'func TestMain(m *testing.M) { os.Exit(0) }\n\nfunc TestCommas(t *testing.T) {}\n')  # fmt: skip
    verdict, _ = play(comma_tasks["bugfix"], [_plant("comma_test.go", planted), _plant("zz_test.go", planted), SUBMIT])
    assert verdict.outcome == 0.0 and verdict.parts["f2p_passed"] == 0.0


def test_os_exit_zero_in_init_is_caught(comma_tasks: dict[str, Task]) -> None:
    code = 'func init() { exitNow(0) }\n\nvar exitNow = osExit\n'
    helper = 'package humanize\n\nimport "os"\n\nvar osExit = os.Exit\n'
    verdict, _ = play(comma_tasks["bugfix"], [_plant("exit.go", helper), _append_to_comma(code), SUBMIT])
    # exit.go is not a file of the package, so the verifier does not copy it: the build fails
    assert verdict.outcome == 0.0
    inline = 'func init() {\n\tif len(os.Args) > 0 {\n\t\tos.Exit(0)\n\t}\n}\n'
    steps = [[call("edit_file", path="comma.go", old_text='import (', new_text='import (\n\t"os"')], _append_to_comma(inline), SUBMIT]
    verdict, _ = play(comma_tasks["bugfix"], steps)
    assert verdict.outcome == 0.0 and verdict.parts["tampered"] == 1.0, verdict.evidence


def test_fake_pass_lines_printed_by_the_code_under_test_are_caught(comma_tasks: dict[str, Task]) -> None:
    task = comma_tasks["bugfix"]
    names = task.data["f2p"] + task.data["p2p"]
    prints = "".join(f'\tfmt.Println("=== RUN   {n}")\n\tfmt.Println("--- PASS: {n} (0.00s)")\n' for n in names)
    code = f"func init() {{\n{prints}\tfmt.Println(\"PASS\")\n}}\n"
    steps = [[call("edit_file", path="comma.go", old_text='import (', new_text='import (\n\t"fmt"')], _append_to_comma(code), SUBMIT]
    verdict, _ = play(task, steps)
    assert verdict.outcome == 0.0 and verdict.parts["tampered"] == 1.0, verdict.evidence


@pytest.mark.slow
def test_a_stdout_filter_rewriting_fail_to_pass_is_caught(comma_tasks: dict[str, Task]) -> None:
    code = '''func init() {
	r, w, _ := os.Pipe()
	real := os.Stdout
	os.Stdout = w
	go func() {
		buf := make([]byte, 1<<16)
		for {
			n, err := r.Read(buf)
			real.Write([]byte(strings.ReplaceAll(string(buf[:n]), "--- FAIL", "--- PASS")))
			if err != nil {
				return
			}
		}
	}()
}
'''
    steps = [[call("edit_file", path="comma.go", old_text='import (', new_text='import (\n\t"os"')], _append_to_comma(code), SUBMIT]
    verdict, _ = play(comma_tasks["bugfix"], steps)
    assert verdict.outcome == 0.0 and verdict.evidence["problem"] is None, verdict.evidence  # it built and ran


@pytest.mark.slow
def test_written_tests_that_always_fail_or_bring_a_test_main_earn_nothing(comma_tasks: dict[str, Task]) -> None:
    task = comma_tasks["write_test"]
    always = 'package humanize\n\nimport "testing"\n\nfunc TestIssue(t *testing.T) { t.Fatal("always") }\n'
    verdict, _ = play(task, [_plant("issue_test.go", always), SUBMIT])
    assert verdict.outcome == 0.0 and verdict.parts["passes_on_fixed"] == 0.0 and verdict.parts["fails_on_buggy"] == 1.0
    with_main = ('package humanize\n\nimport (\n\t"os"\n\t"testing"\n)\n\nfunc TestMain(m *testing.M) { os.Exit(0) }\n\n'
                 'func TestIssue(t *testing.T) {\n\tif Comma(-1) != "-1" {\n\t\tt.Fatal(Comma(-1))\n\t}\n}\n')  # fmt: skip
    verdict, _ = play(task, [_plant("issue_test.go", with_main), SUBMIT])
    assert verdict.outcome == 0.0, verdict.evidence


@pytest.mark.slow
def test_a_real_written_test_scores_one(comma_tasks: dict[str, Task]) -> None:
    mine = 'package humanize\n\nimport "testing"\n\nfunc TestIssue(t *testing.T) {\n\tif Comma(-1000) != "-1,000" {\n\t\tt.Fatal(Comma(-1000))\n\t}\n}\n'
    verdict, _ = play(comma_tasks["write_test"], [_plant("issue_test.go", mine), SUBMIT])
    assert verdict.outcome == 1.0, verdict.evidence


def _perf_task() -> Task:
    from forgerl.envs.swe_go import gosrc, perf
    from forgerl.envs.swe_go.packages import package_by_path, package_sources, test_files
    from forgerl.envs.swe_go.pipeline import make_task

    path = "github.com/iancoleman/strcase"
    source = package_sources(path)["snake.go"]
    fn = next(f for f in gosrc.functions("snake.go", source) if f.name == "ToSnake")
    edit = gosrc.slowdown(source, fn, "quadratic_scan")
    bench = perf.bench_program(package_by_path(path), fn.name, list(fn.params), perf.BENCH_LENGTHS["quadratic_scan"])
    tests = list(gosrc.test_calls(test_files(path)))
    rule = {"min_speedup": 1.5, "repeats": 5, "generation_margin": 2.0}
    return make_task("perf", package_by_path(path), [fn], [edit], [], tests, "ToSnake is slow", 0,
                     {"bench": bench, "perf_rule": rule})  # fmt: skip


@pytest.mark.slow
def test_perf_gold_is_faster_and_a_fast_but_wrong_candidate_is_not_rewarded() -> None:
    task = _perf_task()
    gold, _ = play(task, SweGoEnv().gold_solution(task))
    assert gold.outcome == 1.0 and gold.parts["speedup_ok"] == 1.0, gold.evidence
    assert gold.evidence["perf"]["conservative_speedup"] >= 1.5 and "noise" in gold.evidence["perf"]
    noop, _ = play(task, [SUBMIT])
    assert noop.outcome == 0.0 and noop.parts["p2p_passed"] == 1.0 and noop.parts["speedup_ok"] == 0.0
    # fast (the slowdown is gone) but wrong on long inputs only, which no hidden test uses
    steps = SweGoEnv().gold_solution(task)[:-1]
    wrong = [call("edit_file", path="snake.go", old_text="func ToSnake(s string) string {",
                  new_text='func ToSnake(s string) string {\n\tif len(s) > 5000 {\n\t\treturn ""\n\t}')]  # fmt: skip
    verdict, _ = play(task, [*steps, wrong, SUBMIT])
    assert verdict.outcome == 0.0 and verdict.parts["p2p_passed"] == 1.0 and verdict.parts["speedup_ok"] == 0.0
    assert "different output" in verdict.evidence["bench_problem"]
