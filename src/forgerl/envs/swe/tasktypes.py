"""Task types of the coding families, and the checks that make up each one's reward.

M2's SWE pipeline routes every task by type because each type needs its own reward (M2_NOTES §5):
a bug fix is judged by fail-to-pass and pass-to-pass tests, a feature by the tests that covered the
removed behaviour, a performance task by the pass-to-pass tests *and* a stable speed-up over the slow
version, a test-inversion task by a written test that fails on the bug and passes on the fix, and a
merged task (two bugs in one episode) like a bug fix over the union of both bugs' tests. Every
language's family (Python `swe-bugfix`, `swe-js`, `swe-go`) writes `task.data["kind"]` with one of
`TASK_KINDS` and scores through `kind_verdict`, so the reward breakdown names the same checks in
every language and a task's type is read from its task file, never guessed.

Timing is noisy on shared machines, so a speed-up counts only when it holds across interleaved
repeats (`PerfMeasurement`): the slow and the candidate version alternate, and the ratio must clear
the rule's threshold even between the slow version's fastest quartile and the candidate's slowest.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from forgerl.envs.rewards import Verdict
from forgerl.errors import ConfigError

TaskKind = Literal["bugfix", "feature", "perf", "write_test", "merged"]
TASK_KINDS: tuple[TaskKind, ...] = ("bugfix", "feature", "perf", "write_test", "merged")

CHECKS: dict[str, tuple[str, ...]] = {
    "bugfix": ("f2p_passed", "p2p_passed"),          # the bug's failing tests now pass; nothing else broke
    "feature": ("f2p_passed", "p2p_passed"),         # f2p = the hidden tests that covered the removed feature
    "perf": ("p2p_passed", "speedup_ok"),            # behaviour kept, and measurably faster than the slow version
    "write_test": ("passes_on_fixed", "fails_on_buggy"),
    "merged": ("f2p_passed", "p2p_passed"),          # f2p = the union of both bugs' failing tests
}
"""The checks of each kind, in the order a report shows them; each is a fraction in [0, 1] and the
outcome is 1 only when every one of them is 1 (and no tampering was seen)."""


def check_kind(kind: object) -> TaskKind:
    if kind not in CHECKS:
        raise ConfigError(f"unknown coding task kind {kind!r}; a task file's data.kind is one of {', '.join(TASK_KINDS)}")
    return kind  # type: ignore[return-value]


@dataclass(frozen=True)
class PerfRule:
    """When a measured speed-up counts. `min_speedup` is asked of the conservative ratio (see
    `PerfMeasurement.conservative_speedup`); generation keeps a slowdown only when the gold beats it
    by `min_speedup * generation_margin`, so the gold clears the rule with room under load."""

    min_speedup: float = 1.5
    repeats: int = 5
    generation_margin: float = 2.0

    def __post_init__(self) -> None:
        if self.min_speedup <= 1.0 or self.repeats < 3 or self.generation_margin < 1.0:
            raise ConfigError(f"invalid PerfRule {self}: needs min_speedup > 1, repeats >= 3, generation_margin >= 1")


@dataclass(frozen=True)
class PerfMeasurement:
    """Wall times (seconds) of the slow version and the candidate, measured interleaved."""

    baseline_s: tuple[float, ...]
    candidate_s: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.baseline_s or not self.candidate_s:
            raise ValueError("a perf measurement needs at least one timing of each version")
        if min(*self.baseline_s, *self.candidate_s) <= 0:
            raise ValueError("timings must be positive")

    @property
    def speedup(self) -> float:
        """Ratio of medians: the typical speed-up."""
        return statistics.median(self.baseline_s) / statistics.median(self.candidate_s)

    @property
    def conservative_speedup(self) -> float:
        """The slow version's fast quartile over the candidate's slow quartile: what the speed-up
        is when the noise goes against it. Asked to clear the rule."""
        return _quantile(self.baseline_s, 0.25) / _quantile(self.candidate_s, 0.75)

    @property
    def noise(self) -> float:
        """The larger relative spread ((max - min) / median) of the two series: recorded with every
        measurement so a reader can judge how far to trust it."""
        return max((max(s) - min(s)) / statistics.median(s) for s in (self.baseline_s, self.candidate_s))

    def passes(self, rule: PerfRule) -> bool:
        return self.conservative_speedup >= rule.min_speedup

    def evidence(self) -> dict[str, Any]:
        return {
            "baseline_s": [round(t, 6) for t in self.baseline_s],
            "candidate_s": [round(t, 6) for t in self.candidate_s],
            "speedup": round(self.speedup, 3),
            "conservative_speedup": round(self.conservative_speedup, 3),
            "noise": round(self.noise, 3),
        }


M = TypeVar("M")
GENERATION_MEASUREMENTS = 3
"""How many times generation measures a slowdown before it rejects it as too small."""


async def measure_until_clear(
    measure: Callable[[], Awaitable[M]], clears: Callable[[M], bool], tries: int = GENERATION_MEASUREMENTS,
) -> tuple[M, bool]:
    """Measure up to `tries` times and stop at the first measurement that `clears` the bar; return
    the last measurement and whether it cleared. Generation in every coding family keeps a slowdown
    this way: a load spike on a shared machine can sink one measurement of a real slowdown but not
    three, and no retry lifts a slowdown that is not there over a bar of min_speedup x margin — so
    the kept set rebuilds the same on a busy machine. Exceptions from `measure` propagate."""
    if tries < 1:
        raise ValueError("tries must be >= 1")
    for _ in range(tries):
        measured = await measure()
        if clears(measured):
            return measured, True
    return measured, False


def _quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), written out to keep numpy out of the verifier."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def fraction_passed(names: Sequence[str], passed: Mapping[str, bool]) -> float:
    """Share of `names` that passed; an empty list is vacuously all passed (a task with no
    pass-to-pass tests), a name missing from `passed` did not pass."""
    if not names:
        return 1.0
    return sum(1 for n in names if passed.get(n, False)) / len(names)


def kind_verdict(
    kind: str,
    checks: Mapping[str, float],
    *,
    tampering: Sequence[str] = (),
    perf: PerfMeasurement | None = None,
    evidence: Mapping[str, Any] | None = None,
) -> Verdict:
    """The verdict of a submitted coding task: parts = `submitted`, each of the kind's checks, and
    `tampered`; outcome 1 only when every check is 1 and nothing tampered with the result channel.

    `checks` must hold exactly the kind's checks (a missing one is a verifier bug, not a zero). For
    `perf`, pass `speedup_ok` computed with `PerfMeasurement.passes` and the measurement itself, which
    goes into the evidence with its noise."""
    check_kind(kind)
    expected = CHECKS[kind]
    if set(checks) != set(expected):
        raise ValueError(f"a {kind!r} verdict needs exactly the checks {expected}, got {sorted(checks)}")
    for name, value in checks.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"check {name!r} = {value} is not a fraction in [0, 1]")
    tampered = bool(tampering)
    solved = all(checks[name] == 1.0 for name in expected) and not tampered
    details: dict[str, Any] = {"kind": kind, **(evidence or {})}
    if perf is not None:
        details["perf"] = perf.evidence()
    if tampered:
        details["tampering"] = list(tampering)
    return Verdict(
        outcome=1.0 if solved else 0.0,
        parts={"submitted": 1.0, **{name: float(checks[name]) for name in expected}, "tampered": float(tampered)},
        evidence=details,
    )
