"""The coding task kinds' verdicts and the perf-measurement rule, against hand-computed values."""

from __future__ import annotations

import asyncio

import pytest

from forgerl.envs.swe.tasktypes import (
    CHECKS,
    GENERATION_MEASUREMENTS,
    TASK_KINDS,
    PerfMeasurement,
    PerfRule,
    check_kind,
    fraction_passed,
    kind_verdict,
    measure_until_clear,
)
from forgerl.errors import ConfigError


def test_every_kind_has_checks_and_unknown_kind_is_a_clear_error() -> None:
    assert set(TASK_KINDS) == set(CHECKS)
    with pytest.raises(ConfigError, match="one of bugfix"):
        check_kind("refactor")


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_outcome_is_one_only_when_every_check_is_one(kind: str) -> None:
    names = CHECKS[kind]
    assert kind_verdict(kind, {n: 1.0 for n in names}).outcome == 1.0
    for broken in names:
        checks = {n: (0.5 if n == broken else 1.0) for n in names}
        verdict = kind_verdict(kind, checks)
        assert verdict.outcome == 0.0
        assert verdict.parts[broken] == 0.5 and verdict.evidence["kind"] == kind


def test_tampering_zeroes_and_is_evidence() -> None:
    verdict = kind_verdict("bugfix", {"f2p_passed": 1.0, "p2p_passed": 1.0}, tampering=["second result line"])
    assert verdict.outcome == 0.0 and verdict.parts["tampered"] == 1.0
    assert verdict.evidence["tampering"] == ["second result line"]


def test_missing_or_extra_check_is_a_verifier_bug() -> None:
    with pytest.raises(ValueError, match="exactly the checks"):
        kind_verdict("perf", {"p2p_passed": 1.0})
    with pytest.raises(ValueError, match="not a fraction"):
        kind_verdict("bugfix", {"f2p_passed": 2.0, "p2p_passed": 1.0})


def test_fraction_passed() -> None:
    assert fraction_passed([], {}) == 1.0
    assert fraction_passed(["a", "b", "c", "d"], {"a": True, "b": False, "c": True}) == 0.5


def test_perf_measurement_figures() -> None:
    m = PerfMeasurement(baseline_s=(1.0, 1.2, 1.1, 0.9, 1.0), candidate_s=(0.2, 0.25, 0.3, 0.2, 0.2))
    assert m.speedup == pytest.approx(1.0 / 0.2)
    # quantiles by linear interpolation: baseline q25 of (0.9,1,1,1.1,1.2) = 1.0; candidate q75 of (.2,.2,.2,.25,.3) = .25
    assert m.conservative_speedup == pytest.approx(1.0 / 0.25)
    assert m.noise == pytest.approx(max((1.2 - 0.9) / 1.0, (0.3 - 0.2) / 0.2))
    assert m.passes(PerfRule(min_speedup=3.0)) and not m.passes(PerfRule(min_speedup=4.5))
    assert m.evidence()["speedup"] == 5.0


def test_a_speedup_inside_the_noise_does_not_pass() -> None:
    noisy = PerfMeasurement(baseline_s=(1.0, 3.0, 1.0, 3.0, 2.0), candidate_s=(0.5, 1.5, 0.5, 1.5, 1.0))
    assert noisy.speedup == pytest.approx(2.0)
    assert not noisy.passes(PerfRule(min_speedup=1.5))  # 1.0 / 1.5 < 1.5


def test_perf_verdict_carries_the_measurement() -> None:
    m = PerfMeasurement(baseline_s=(1.0, 1.0, 1.0), candidate_s=(0.1, 0.1, 0.1))
    verdict = kind_verdict("perf", {"p2p_passed": 1.0, "speedup_ok": float(m.passes(PerfRule()))}, perf=m)
    assert verdict.outcome == 1.0 and verdict.evidence["perf"]["noise"] == 0.0


def test_invalid_rule_and_measurement() -> None:
    with pytest.raises(ConfigError):
        PerfRule(min_speedup=1.0)
    with pytest.raises(ValueError):
        PerfMeasurement(baseline_s=(), candidate_s=(1.0,))


def test_measure_until_clear_stops_at_the_first_measurement_that_clears() -> None:
    readings = iter([1.2, 3.5, 9.0])
    calls: list[float] = []

    async def measure() -> float:
        calls.append(next(readings))
        return calls[-1]

    value, cleared = asyncio.run(measure_until_clear(measure, lambda v: v >= 3.0))
    assert (value, cleared, calls) == (3.5, True, [1.2, 3.5])


def test_measure_until_clear_gives_up_after_the_tries_with_the_last_measurement() -> None:
    readings = iter([1.0, 2.0, 2.5, 99.0])

    async def measure() -> float:
        return next(readings)

    assert asyncio.run(measure_until_clear(measure, lambda v: v >= 3.0)) == (2.5, False)
    assert GENERATION_MEASUREMENTS == 3
    with pytest.raises(ValueError):
        asyncio.run(measure_until_clear(measure, lambda v: True, tries=0))
