"""swe-js perf generation rebuilds the same on a busy machine: pinned rounds are used as given (no
calibration), a slowdown is measured up to three times before it is rejected, and the measured
timings go to the result's timings — never into the task, whose bytes must not depend on a clock.
The benchmark timer is replaced by a scripted one; the suite run is real (Node and the pinned npm
packages, as in the other swe-js tests)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from forgerl.envs.swe_js import pipeline
from forgerl.envs.swe_js.build import read_rounds
from forgerl.envs.swe_js.judge import BenchSeries
from forgerl.envs.swe_js.packages import installed_sources, load_suite

PACKAGE = "ms"


def _perf(monkeypatch: pytest.MonkeyPatch, speedups: list[float], pinned: dict[str, int]):
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
    config = pipeline.GenerationConfig(packages=(PACKAGE,), perf_rounds=pinned)
    result = pipeline.GenerationResult()
    suite = load_suite(PACKAGE)
    ctx = pipeline._Context(PACKAGE, dict(installed_sources(PACKAGE)), suite, config, asyncio.Semaphore(1), result)
    target = suite.targets[0]
    tasks, attempts = asyncio.run(pipeline._perf(ctx, target))
    return tasks, attempts, result, timed_rounds, f"{PACKAGE}:{target.name}"


def test_pinned_rounds_skip_calibration_and_a_retry_keeps_a_real_slowdown(monkeypatch: pytest.MonkeyPatch) -> None:
    key = f"{PACKAGE}:{load_suite(PACKAGE).targets[0].name}"
    tasks, attempts, result, timed_rounds, key = _perf(monkeypatch, [1.1, 2.0, 8.0], {key: 40})
    assert timed_rounds == [40, 40, 40]  # pinned: never calibrated; two sunk measurements, kept at the third
    assert [a.status for a in attempts] == ["kept"] and len(tasks) == 1
    task = tasks[0]
    assert task.data["perf"]["rounds"] == 40 and "generation" not in task.data["perf"]
    assert result.timings[task.id]["speedup"] == 8.0
    assert result.rounds == {key: 40} and result.calibrated == []
    assert "more than 3x longer" in task.data["issue"]  # the rule's bar, not a measured figure


def test_a_slowdown_is_rejected_after_three_measurements_and_unpinned_targets_are_calibrated(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tasks, attempts, result, timed_rounds, key = _perf(monkeypatch, [1.1, 2.0, 2.9, 50.0], {})
    assert timed_rounds == [-1, 7, 7, 7]
    assert tasks == [] and [a.reason for a in attempts] == ["too little slowdown"]
    assert result.rounds == {key: 7} and result.calibrated == [key] and result.timings == {}


def test_pinned_rounds_file_errors_say_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "rounds.json"
    path.write_text(json.dumps({"ms:ms": 12}))
    assert read_rounds(path) == {"ms:ms": 12}
    for bad in ("{not json", json.dumps({"ms:ms": 0}), json.dumps({"ms:ms": 1.5}), json.dumps([1])):
        path.write_text(bad)
        with pytest.raises(SystemExit, match="--recalibrate"):
            read_rounds(path)
    with pytest.raises(SystemExit, match="cannot read"):
        read_rounds(tmp_path / "missing.json")


def test_the_shipped_rounds_cover_every_shipped_perf_task() -> None:
    """A rebuild times each shipped perf task's benchmark at the rounds the task carries."""
    from forgerl.envs.swe_js.build import DEFAULT_ROUNDS

    pinned = read_rounds(DEFAULT_ROUNDS)
    perf = [json.loads(line)["data"] for line in (DEFAULT_ROUNDS.parent / "tasks.jsonl").read_text().splitlines()
            if json.loads(line)["data"]["kind"] == "perf"]
    assert perf
    for data in perf:
        assert pinned[f"{data['package']}:{data['function']}"] == data["perf"]["rounds"]
