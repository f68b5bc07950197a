"""What the detectors read: a run's per-step metrics, its config, and per-step statistics of its
trajectories (groups without signal, format errors, weight lag) with example trajectory ids.

The same `RunSeries` is filled two ways: from a finished run directory (doctor/rundir.py reads the
store) and step by step in the training loop (doctor/live.py, from the batch in memory). The
per-step trajectory statistics come from one function, `step_stats`, in both cases, so a live
warning and the post-hoc report agree.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from forgerl.envs.rewards import verifier_reward
from forgerl.types import Boundary, Trajectory, TrajectoryStatus

REWARD_MODEL_KEY = "reward_model"
"""Where the reward-model blend records a rollout's score (forgerl/review/train_hook.py META_KEY)."""
EXAMPLES_PER_KIND = 3
"""Trajectory ids kept per (step, condition): enough to open a few in `forgerl store show`."""

# Derived per-step statistics (not logged by the loop; computed here from the trajectories).
GROUPS = "doctor/groups"
NO_SIGNAL = "doctor/groups_no_signal"
ALL_PASS = "doctor/groups_all_pass"
ALL_FAIL = "doctor/groups_all_fail"
FORMAT_ERRORS = "doctor/format_error_frac"
VERSION_LAG = "doctor/version_lag"


@dataclass
class RunSeries:
    """step -> {metric: value}, the run's config (a plain dict of config.toml), and example
    trajectory ids per (step, condition)."""

    config: dict[str, Any] = field(default_factory=dict)
    table: dict[int, dict[str, float]] = field(default_factory=dict)
    examples: dict[tuple[int, str], list[str]] = field(default_factory=dict)
    _points: dict[str, list[tuple[int, float]]] = field(default_factory=dict, repr=False)
    """metric -> its finite (step, value) points by step: what `values` returns, kept as steps are
    added (the live doctor reads a dozen metrics every step; walking the table each time would
    make a long run's steps slower and slower). Dropped and rebuilt if a step arrives out of order."""

    def add_step(self, step: int, metrics: Mapping[str, float]) -> None:
        row = {k: float(v) for k, v in metrics.items()}
        self.table.setdefault(step, {}).update(row)
        for name, value in row.items():
            points = self._points.get(name)
            if points is None:
                continue  # built on first read
            if points and points[-1][0] >= step:
                del self._points[name]  # out of order or a value replaced: rebuild on the next read
            elif math.isfinite(value):
                points.append((step, value))

    def add_examples(self, step: int, examples: Mapping[str, list[str]]) -> None:
        for kind, ids in examples.items():
            if ids:
                self.examples[(step, kind)] = list(ids[:EXAMPLES_PER_KIND])

    def values(self, name: str) -> list[tuple[int, float]]:
        """(step, value) of one metric, finite values only, by step."""
        points = self._points.get(name)
        if points is None:
            points = self._points[name] = [(s, row[name]) for s, row in sorted(self.table.items())
                                           if name in row and math.isfinite(row[name])]
        return list(points)

    def setting(self, dotted: str, default: Any = None) -> Any:
        """A config value by dotted key (`rollout.max_staleness`); `default` when absent."""
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def example_ids(self, kind: str, steps: Iterable[int], n: int = EXAMPLES_PER_KIND) -> list[str]:
        """Up to n example trajectory ids of a condition from the given steps (latest first)."""
        out: list[str] = []
        for step in sorted(set(steps), reverse=True):
            for tid in self.examples.get((step, kind), []):
                if tid not in out:
                    out.append(tid)
                if len(out) >= n:
                    return out
        return out


def windows(points: list[tuple[int, float]], frac: float, min_window: int = 3
            ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """The first and last `frac` of the points: at least `min_window` each where the points allow
    (a window of one or two batches is one noisy sample), never overlapping, at least one each."""
    k = max(1, min(max(min_window, round(len(points) * frac)), len(points) // 2))
    return points[:k], points[-k:]


def mean(points: list[tuple[int, float]]) -> float:
    return statistics.fmean(v for _, v in points) if points else math.nan


def step_stats(trajectories: Iterable[Trajectory], trainer_version: int | None) -> tuple[dict[str, float], dict[str, list[str]]]:
    """One training step's batch -> derived statistics and example ids per condition.

    A group without signal has all its scored rewards equal (its advantages are all zero); it is
    all-pass when every member passes the verifier and all-fail when none does. `trainer_version`:
    the policy version the step trained from; the version lag is how far the freshest weights any
    call of the batch used lag it (0 on-policy)."""
    trajectories = list(trajectories)
    groups: dict[str, list[Trajectory]] = {}
    for t in trajectories:
        if t.group_id is not None and t.reward is not None and t.status != TrajectoryStatus.FAILED:
            groups.setdefault(t.group_id, []).append(t)
    stats: dict[str, float] = {}
    examples: dict[str, list[str]] = {"no_signal": [], "all_pass": [], "all_fail": [], "format_error": [],
                                      "truncated": [], "stale": [], "rm_over_verifier": []}
    counted = {g: m for g, m in groups.items() if len(m) > 1}
    if counted:
        flat = {g: m for g, m in counted.items() if max(t.reward for t in m) - min(t.reward for t in m) < 1e-9}  # type: ignore[operator]
        passing = {g for g, m in flat.items() if all(verifier_reward(t) == 1.0 for t in m)}
        failing = {g for g, m in flat.items() if all((verifier_reward(t) or 0.0) <= 0.0 for t in m)}
        stats.update({GROUPS: float(len(counted)), NO_SIGNAL: len(flat) / len(counted),
                      ALL_PASS: len(passing) / len(counted), ALL_FAIL: len(failing) / len(counted)})
        examples["no_signal"] = [flat[g][0].id for g in flat]
        examples["all_pass"] = [counted[g][0].id for g in passing]
        examples["all_fail"] = [counted[g][0].id for g in failing]
    if trajectories:
        bad = [t for t in trajectories if any(e.boundary == Boundary.PARSE for e in t.errors)]
        stats[FORMAT_ERRORS] = len(bad) / len(trajectories)
        examples["format_error"] = [t.id for t in bad]
        examples["truncated"] = [t.id for t in trajectories if t.status == TrajectoryStatus.TRUNCATED]
        # what reward hacking looks like: the learned reward likes it, the verifier does not
        liked = [(float(rm["score"]), t.id) for t in trajectories
                 if isinstance(rm := t.metadata.get(REWARD_MODEL_KEY), dict) and "score" in rm
                 and float(rm.get("verifier_reward", 1.0)) < 1.0]
        examples["rm_over_verifier"] = [tid for _, tid in sorted(liked, reverse=True)]
        versions = [c.policy_version for t in trajectories for c in t.calls]
        if trainer_version is not None and versions:
            stats[VERSION_LAG] = float(trainer_version - max(versions))
            oldest = min(versions)
            examples["stale"] = [t.id for t in trajectories if any(c.policy_version == oldest for c in t.calls)]
    return stats, {k: v[:EXAMPLES_PER_KIND] for k, v in examples.items()}
