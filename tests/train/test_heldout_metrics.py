"""The held-out metrics every run logs (train/rollouts.py `_pass_metrics`)."""

from __future__ import annotations

from forgerl.train.rollouts import _pass_metrics
from forgerl.types import Trajectory, TrajectoryStatus


def episode(status: TrajectoryStatus, outcome: float | None, rewrites: tuple[str, ...] = ()) -> Trajectory:
    return Trajectory(status=status, reward=None if outcome is None else outcome,
                      reward_breakdown={} if outcome is None else {"outcome": outcome},
                      metadata={"context_rewrites": [{"by": by} for by in rewrites]})


def test_pass_rate_truncation_and_policy_rewrites_over_scored_episodes():
    results = [episode(TrajectoryStatus.COMPLETED, 1.0, ("policy", "policy", "harness")),
               episode(TrajectoryStatus.COMPLETED, 0.5),                 # partly right is not a pass
               episode(TrajectoryStatus.TRUNCATED, 0.0, ("policy",)),
               episode(TrajectoryStatus.COMPLETED, 1.0),
               episode(TrajectoryStatus.FAILED, None, ("policy",))]      # infra failure: not scored
    assert _pass_metrics(results) == {"heldout/pass_rate": 0.5, "heldout/scored": 4.0,
                                      "heldout/truncated_rate": 0.25, "heldout/policy_rewrites": 0.75}


def test_nothing_scored_reports_only_the_count():
    assert _pass_metrics([episode(TrajectoryStatus.FAILED, None)]) == {"heldout/scored": 0.0}
