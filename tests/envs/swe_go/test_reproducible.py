"""What keeps two swe-go builds byte for byte alike on a busy machine, checked with scripted
runners: failure output cut to what repeated runs agree on (random inputs, map order), a runaway
suite retried once before "timeout", and pinned perf decisions read back instead of re-timed."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from forgerl.envs.swe.pins import PerfPin
from forgerl.envs.swe.tasktypes import GENERATION_MEASUREMENTS, PerfMeasurement
from forgerl.envs.swe_go import gosrc, perf, pipeline
from forgerl.envs.swe_go.gorun import GoTestRun, merge_repeats
from forgerl.envs.swe_go.packages import package_by_path, package_sources
from forgerl.envs.swe_go.packages import test_files as go_test_files
from tests.envs.swe_go.conftest import HUMANIZE, comma_edit, needs_go


def _run(passed: dict[str, bool], messages: dict[str, str] | None = None, **kw: Any) -> GoTestRun:
    return GoTestRun(passed, messages=messages or {}, **kw)


def test_a_test_with_random_inputs_is_left_out_of_the_task() -> None:
    """Split's comparison flip fails TestJoinSplit (testing/quick, random strings) in most runs and
    TestSimpleSplit in all: only TestSimpleSplit may decide f2p, the issue and the gold test."""
    runs = [_run({"TestJoinSplit": False, "TestSimpleSplit": False, "TestX": True},
                 {"TestJoinSplit": f"quick_test.go:9: #1: failed on input \"{junk}\"",
                  "TestSimpleSplit": "unquote_test.go:14: got [a b], expected [a  b]\n--- FAIL: TestSimpleSplit"})
            for junk in ("\U000ec29e", "q\x83", "abc")]  # fmt: skip
    runs.append(_run({"TestJoinSplit": True, "TestSimpleSplit": False, "TestX": True}, runs[0].messages))
    merged = merge_repeats(runs)
    assert merged.unstable == ("TestJoinSplit",) and merged.failing() == ["TestJoinSplit", "TestSimpleSplit"]
    assert merged.stable_failing() == ["TestSimpleSplit"]
    assert pipeline.classify(merged, {"TestJoinSplit", "TestSimpleSplit"}) is None
    issue = pipeline.failure_issue(package_by_path(HUMANIZE), _comma(), merged, random.Random(0))
    assert "got [a b]" in issue and "failed on input" not in issue
    # a random test of another function that fails in any run breaks pass-to-pass
    assert pipeline.classify(merged, {"TestSimpleSplit"}) == "breaks pass-to-pass"


def test_only_failures_that_vary_are_flaky_and_a_bare_fail_line_is_no_detail() -> None:
    shuffled = merge_repeats([_run({"TestShuffle": False}, {"TestShuffle": f"panic: index out of range [{i}]"}) for i in (4, 12)])
    assert shuffled.unstable == ("TestShuffle",) and pipeline.classify(shuffled, {"TestShuffle"}) == "flaky"
    bare = merge_repeats([_run({"TestSqueeze": False}, {"TestSqueeze": "--- FAIL: TestSqueeze"})] * 3)
    assert pipeline.classify(bare, {"TestSqueeze"}) is None
    with pytest.raises(ValueError, match="no failure output"):
        pipeline.failure_issue(package_by_path(HUMANIZE), _comma(), bare, random.Random(0))


def test_a_runaway_run_wins_the_merge_and_reads_as_timeout() -> None:
    hung = _run({"TestSwapCase": False}, runaway=True)
    assert merge_repeats([_run({"TestSwapCase": False}), hung]) is hung
    assert pipeline.classify(hung, {"TestSwapCase"}) == "timeout"


def _comma() -> gosrc.GoFunction:
    return next(f for f in gosrc.functions("comma.go", package_sources(HUMANIZE)["comma.go"]) if f.name == "Comma")


class _Script:
    """A fake run_go_tests answering from a list, recording each call's limits."""

    def __init__(self, answers: list[GoTestRun]) -> None:
        self.answers = answers
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, files: dict[str, str], import_path: str, name: str, tests: list[str], **kw: Any) -> GoTestRun:
        self.calls.append(kw)
        return self.answers.pop(0)


@needs_go
def test_a_timeout_then_a_pass_keeps_the_mutant(monkeypatch: pytest.MonkeyPatch) -> None:
    """A load spike (runaway on the first run) is retried with doubled limits; the retry's clean
    failure keeps the bug — the same task a quiet machine gives."""
    calls = gosrc.test_calls(go_test_files(HUMANIZE))
    own = {t: False for t in gosrc.tests_of(_comma(), calls)}
    failing = {**{t: True for t in calls}, **own}
    message = {t: "comma_test.go:20: got 1,000, want -1,000" for t in own}
    script = _Script([_run(failing, runaway=True), _run(failing, message), _run(failing)])  # bug, retry, feature
    monkeypatch.setattr(pipeline, "run_go_tests", script)
    edit = comma_edit()
    monkeypatch.setattr(pipeline.gosrc, "mutations", lambda *a: [edit])
    config = pipeline.GenerationConfig(max_tries_per_function=1)
    gen = pipeline._Generator(config)
    tasks, bugs = asyncio.run(gen.function(package_by_path(HUMANIZE), _comma(), calls))
    assert [t.data["kind"] for t in tasks] == ["bugfix", "write_test", "feature"] and len(bugs) == 1
    assert "want -1,000" in tasks[0].data["issue"]
    first, retry = script.calls[:2]
    assert retry["wall_s"] == 2 * first["wall_s"] and retry["test_timeout_s"] == 2 * first["test_timeout_s"]
    assert first["repeats"] == retry["repeats"] == config.output_runs
    assert gen.result.retried == ["go-humanize"]


@needs_go
def test_a_real_hang_times_out_twice_and_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    hung = _run({"TestCommas": False}, runaway=True)
    script = _Script([hung, hung])
    monkeypatch.setattr(pipeline, "run_go_tests", script)
    gen = pipeline._Generator(pipeline.GenerationConfig())
    run = asyncio.run(gen.run(package_by_path(HUMANIZE), {}, ["TestCommas"]))
    assert pipeline.classify(run, {"TestCommas"}) == "timeout" and len(script.calls) == 2
    assert gen.result.retried == ["go-humanize"]


# --- pinned perf decisions -------------------------------------------------------------------


def _timed(monkeypatch: pytest.MonkeyPatch, speedups: list[float], pins: dict[str, PerfPin]) -> tuple[Any, int, pipeline.GenerationResult]:
    """Run the perf decision for one key with perf.measure answering `speedups` in turn; (reason, number of timings, result)."""
    timings: list[float] = []

    async def measure(*args: Any, **kw: Any) -> perf.BenchResult:
        speedup = speedups[len(timings)]
        timings.append(speedup)
        return perf.BenchResult(PerfMeasurement((1.0,) * 5, (1.0 / speedup,) * 5), True)

    monkeypatch.setattr(pipeline.perf, "measure", measure)
    monkeypatch.setattr(pipeline, "code_files", lambda path: {"a.go": "package a\n"})
    edit = gosrc.Edit("a.go", 10, 10, "", "// slow\n", "quadratic_scan", "slow", 2)
    gen = pipeline._Generator(pipeline.GenerationConfig(perf_pins=pins))
    _measured, reason = asyncio.run(gen.timed(package_by_path(HUMANIZE), edit, "bench", KEY))
    return reason, len(timings), gen.result


KEY = "go-humanize:Comma:quadratic_scan"


def test_an_unpinned_slowdown_is_measured_up_to_three_times_and_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    reason, timed, result = _timed(monkeypatch, [1.0, 3.5], {})
    assert reason is None and timed == 2 and result.pins == {KEY: PerfPin(rounds=None, kept=True)} and result.measured == [KEY]
    reason, timed, result = _timed(monkeypatch, [1.0] * GENERATION_MEASUREMENTS, {})
    assert reason == "not faster" and timed == GENERATION_MEASUREMENTS and result.pins == {KEY: PerfPin(None, False)}


def test_a_pin_decides_and_a_kept_pin_is_timed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    reason, timed, result = _timed(monkeypatch, [1.2], {KEY: PerfPin(None, True)})  # near the bar this time
    assert reason is None and timed == 1 and result.disagreements == [KEY] and result.measured == []
    assert result.pins == {KEY: PerfPin(None, True)}
    reason, timed, result = _timed(monkeypatch, [], {KEY: PerfPin(None, False)})  # rejected: never timed again
    assert reason == "not faster" and timed == 0 and result.pins == {KEY: PerfPin(None, False)}


def test_a_timed_out_benchmark_is_a_timing_miss_and_a_differing_output_is_not_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [perf.BenchResult(None, False, "the slow version's benchmark gave timed out than the bug-free one"),
               perf.BenchResult(PerfMeasurement((1.0,) * 5, (0.2,) * 5), True)]  # fmt: skip

    async def measure(*args: Any, **kw: Any) -> perf.BenchResult:
        return answers.pop(0)

    monkeypatch.setattr(pipeline.perf, "measure", measure)
    monkeypatch.setattr(pipeline, "code_files", lambda path: {"a.go": "package a\n"})
    edit = gosrc.Edit("a.go", 10, 10, "", "// slow\n", "quadratic_scan", "slow", 2)
    gen = pipeline._Generator(pipeline.GenerationConfig())
    _m, reason = asyncio.run(gen.timed(package_by_path(HUMANIZE), edit, "bench", KEY))
    assert reason is None and gen.result.pins == {KEY: PerfPin(None, True)} and answers == []
    answers[:] = [perf.BenchResult(None, False, "the slow version's benchmark gave a different output than the bug-free one")]
    gen = pipeline._Generator(pipeline.GenerationConfig())
    _m, reason = asyncio.run(gen.timed(package_by_path(HUMANIZE), edit, "bench", KEY))
    assert reason == "bench differs" and gen.result.pins == {} and answers == []


@needs_go
def test_xstrings_hidden_tests_report_the_same_failing_case_every_run() -> None:
    """`runTestCases` over a Go map stops at the first failing case; the hidden tests iterate its
    keys sorted (packages.TEST_PATCHES), so the case a failure quotes no longer depends on Go's
    random map order — and a copy that does not match the pinned source is refused, not run."""
    from forgerl.envs.swe_go.packages import _patched
    from forgerl.errors import ConfigError

    util = go_test_files("github.com/huandu/xstrings")["util_test.go"]
    assert '"sort"' in util and "sort.Strings(keys)" in util and "for k, v := range cases" not in util
    with pytest.raises(ConfigError, match="TEST_PATCHES"):
        _patched("github.com/huandu/xstrings", "util_test.go", "package xstrings\n")
