"""swe-js perf generation rebuilds the same on a busy machine: a perf target's timing decisions
(benchmark rounds, kept or not) are pinned — a pinned target is not calibrated and not re-decided,
a pinned rejection is not even timed — an unpinned slowdown is measured up to three times before it
is rejected, and measured timings go to the result's timings, never into the task, whose bytes
must not depend on a clock. The benchmark timer is replaced by a scripted one; the suite run is
real (Node and the pinned npm packages, as in the other swe-js tests)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from forgerl.envs.swe_js import pipeline
from forgerl.envs.swe_js.build import DEFAULT_PINS, read_pins
from forgerl.envs.swe_js.judge import BenchSeries
from forgerl.envs.swe_js.packages import installed_sources, load_suite

PACKAGE = "ms"


def _perf(monkeypatch: pytest.MonkeyPatch, speedups: list[float], pinned: dict[str, pipeline.PerfPin]):
    """Run `_perf` on ms's first target with a timer that reports `speedups` in turn."""
    readings = iter(speedups)
    timed_rounds: list[int] = []

    async def fake_benchmarks(versions, suite, cases, rounds, repeats, wall_s):  # noqa: ANN001, ANN202
        timed_rounds.append(rounds)
        factor = next(readings)
        return [BenchSeries((factor,) * repeats, True, (), None), BenchSeries((1.0,) * repeats, True, (), None)]

    async def no_calibration(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        timed_rounds.append(-1)
        return 7

    monkeypatch.setattr(pipeline, "run_benchmarks", fake_benchmarks)
    monkeypatch.setattr(pipeline, "calibrate_rounds", no_calibration)
    config = pipeline.GenerationConfig(packages=(PACKAGE,), perf_pins=pinned)
    result = pipeline.GenerationResult()
    suite = load_suite(PACKAGE)
    ctx = pipeline._Context(PACKAGE, dict(installed_sources(PACKAGE)), suite, config, asyncio.Semaphore(1), result)
    target = suite.targets[0]
    tasks, attempts = asyncio.run(pipeline._perf(ctx, target))
    return tasks, attempts, result, timed_rounds, f"{PACKAGE}:{target.name}"


def _key() -> str:
    return f"{PACKAGE}:{load_suite(PACKAGE).targets[0].name}"


def test_an_unpinned_slowdown_is_kept_at_the_first_of_three_measurements_that_clears(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tasks, attempts, result, timed_rounds, key = _perf(monkeypatch, [1.1, 2.0, 8.0], {})
    assert timed_rounds == [-1, 7, 7, 7]  # calibrated once; two sunk measurements, kept at the third
    assert [a.status for a in attempts] == ["kept"] and len(tasks) == 1
    task = tasks[0]
    assert task.data["perf"]["rounds"] == 7 and "generation" not in task.data["perf"]
    assert result.timings[task.id]["speedup"] == 8.0 and result.timings[task.id]["clears_bar"] is True
    assert result.pins == {key: pipeline.PerfPin(7, True)} and result.measured == [key]
    assert "more than 3x longer" in task.data["issue"]  # the rule's bar, not a measured figure


def test_an_unpinned_slowdown_is_rejected_after_three_measurements(monkeypatch: pytest.MonkeyPatch) -> None:
    tasks, attempts, result, timed_rounds, key = _perf(monkeypatch, [1.1, 2.0, 2.9, 50.0], {})
    assert timed_rounds == [-1, 7, 7, 7]
    assert tasks == [] and [a.reason for a in attempts] == ["too little slowdown"]
    assert result.pins == {key: pipeline.PerfPin(7, False)} and result.timings == {}


def test_a_pinned_kept_target_is_kept_even_when_this_builds_timing_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    tasks, attempts, result, timed_rounds, key = _perf(monkeypatch, [1.2], {_key(): pipeline.PerfPin(40, True)})
    assert timed_rounds == [40]  # not calibrated, timed once (for perf_timings.json)
    assert len(tasks) == 1 and tasks[0].data["perf"]["rounds"] == 40
    assert result.disagreements == [key] and result.measured == []
    assert result.timings[tasks[0].id]["clears_bar"] is False


def test_a_pinned_rejection_is_not_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    tasks, attempts, result, timed_rounds, key = _perf(monkeypatch, [], {_key(): pipeline.PerfPin(40, False)})
    assert timed_rounds == [] and tasks == [] and [a.reason for a in attempts] == ["too little slowdown"]
    assert result.pins == {key: pipeline.PerfPin(40, False)}


def test_pins_file_errors_say_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    path.write_text(json.dumps({"ms:ms": {"rounds": 12, "kept": True}}))
    assert read_pins(path) == {"ms:ms": pipeline.PerfPin(12, True)}
    for bad in ("{not json", json.dumps({"ms:ms": {"rounds": 0, "kept": True}}), json.dumps({"ms:ms": 12}),
                json.dumps({"ms:ms": {"rounds": 3, "kept": 1}}), json.dumps({"ms:ms": {"rounds": 3}}), json.dumps([1])):
        path.write_text(bad)
        with pytest.raises(SystemExit, match="--recalibrate"):
            read_pins(path)
    with pytest.raises(SystemExit, match="cannot read"):
        read_pins(tmp_path / "missing.json")


def test_the_shipped_pins_decide_every_shipped_perf_task() -> None:
    """Every shipped perf task is a pinned kept target with the rounds it carries, and every pinned
    kept target is shipped: a rebuild reproduces the set."""
    pins = read_pins(DEFAULT_PINS)
    perf = [json.loads(line)["data"] for line in (DEFAULT_PINS.parent / "tasks.jsonl").read_text().splitlines()
            if json.loads(line)["data"]["kind"] == "perf"]
    assert perf
    shipped = {f"{d['package']}:{d['function']}": d["perf"]["rounds"] for d in perf}
    assert shipped == {key: pin.rounds for key, pin in pins.items() if pin.kept}
