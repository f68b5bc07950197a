"""Crafted run directories for the doctor's tests, written the way the training loop writes them.

`craft(tmp_path, ...)` makes a run directory with the project's own writers: config.toml from
`dump_config(load_config(...))`, the store through `TrajectoryStore` (add_run, add_trajectories,
mark_consumed, log_metrics), and each step's rollout metrics from the loop's own
`rollout_metrics`. The other per-step metrics start from a healthy baseline shaped like the main
job's (entropy slowly falling, no clipping, no mismatch, a balanced MoE, held-out rising) and a
test overrides the ones that make its condition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from forgerl.review.train_hook import apply_reward_model, reward_model_metrics
from forgerl.store import TrajectoryStore
from forgerl.train.config import RewardModelSpec, dump_config, load_config, public_config
from forgerl.train.loop import rollout_metrics
from forgerl.types import Boundary, Failure, LLMCall, Trajectory, TrajectoryStatus

STEPS = 12
GROUPS = 8
GROUP_SIZE = 4
EVAL_EVERY = 4


@dataclass
class Episode:
    """How one crafted rollout looks: passed?, status, a parse error?, the weights it used."""

    passed: bool
    status: TrajectoryStatus = TrajectoryStatus.COMPLETED
    parse_error: bool = False
    policy_version: int | None = None  # None: the trainer's (on-policy)
    rm_score: float | None = None  # the reward model's score, blended in as the loop's transform does


EpisodeFn = Callable[[int, int, int], Episode]
"""(step, group, index) -> the episode."""
MetricFn = Callable[[int, dict[str, float]], None]
"""(step, metrics) -> change the step's metrics in place."""


def healthy_episode(step: int, group: int, index: int) -> Episode:
    """Pass rate rising from ~0.35 to ~0.65; every group mixed (1–3 of 4 pass); 1 in 16 truncated."""
    passes = 1 + (group + step // 5) % 3
    return Episode(passed=index < passes,
                   status=TrajectoryStatus.TRUNCATED if (group * GROUP_SIZE + index + step) % 16 == 0
                   else TrajectoryStatus.COMPLETED)


def healthy_metrics(step: int) -> dict[str, float]:
    return {
        "train/entropy": 0.08 - 0.002 * step, "train/loss": -0.03, "train/grad_norm": 0.2,
        "loss/clip_frac_high": 0.01 if step % 3 else 0.015, "loss/clip_frac_low": 0.0, "loss/is_ratio_mean": 1.0,
        "mismatch/mean_abs_logprob": 0.001, "mismatch/prob_corr": 0.999,
        "moe/max_over_mean_load": 1.5 - 0.01 * step, "moe/mean_max_over_mean_load": 1.3,
        "time/rollout_s": 5.0 + 0.05 * step, "time/train_s": 4.0, "time/sync_s": 0.1,
    }


def eval_reward(step: int) -> float:
    """Held-out reward rising: 0.2 at step 0, 0.4, 0.5, 0.55."""
    return {0: 0.2, 4: 0.4, 8: 0.5, 12: 0.55}.get(step, 0.55)


@dataclass
class CraftedRun:
    run_dir: Path
    run_id: str
    ids: dict[int, list[str]] = field(default_factory=dict)
    """step -> the trajectory ids it consumed."""
    trajectories: dict[str, Trajectory] = field(default_factory=dict)


def _trajectory(step: int, group: int, index: int, episode: Episode) -> Trajectory:
    version = step - 1 if episode.policy_version is None else episode.policy_version
    call = LLMCall(prompt_ids=[1, 2, 3], completion_ids=[4, 5], completion_logprobs=[-0.1, -0.2], loss_mask=[1, 1],
                   policy_version=version, finish_reason="length" if episode.status == TrajectoryStatus.TRUNCATED else "stop")
    errors = [Failure(boundary=Boundary.PARSE, message="could not parse the tool call", turn=1)] if episode.parse_error else []
    trajectory = Trajectory(task_id=f"task-{step}-{group}", group_id=f"step{step}-g{group}", calls=[call],
                            reward=1.0 if episode.passed else 0.0, status=episode.status, errors=errors,
                            rollout_step=step - 1, family="tool-reasoning")
    if episode.rm_score is not None:
        model = SimpleNamespace(score=lambda todo: [episode.rm_score] * len(todo))
        apply_reward_model([[trajectory]], model, RewardModelSpec(weight=0.5))  # type: ignore[arg-type]
    return trajectory


def craft(tmp_path: Path, *, name: str = "run", steps: int = STEPS, episode: EpisodeFn = healthy_episode,
          metrics: MetricFn | None = None, evals: Callable[[int], float] = eval_reward,
          config: dict[str, Any] | None = None) -> CraftedRun:
    run_dir = tmp_path / name
    run_dir.mkdir(parents=True)
    cfg = load_config(None, **{"steps": steps, "groups_per_step": GROUPS, "group_size": GROUP_SIZE,
                               "eval": {"every": EVAL_EVERY, "tasks": 32}, "run_dir": str(run_dir),
                               **(config or {})})
    (run_dir / "config.toml").write_text(dump_config(cfg))
    crafted = CraftedRun(run_dir, "")
    with TrajectoryStore(run_dir) as store:
        crafted.run_id = store.add_run(public_config(cfg))
        store.log_metrics(crafted.run_id, 0, {"eval/reward": evals(0)})
        for step in range(1, steps + 1):
            batch = [_trajectory(step, g, i, episode(step, g, i)) for g in range(GROUPS) for i in range(GROUP_SIZE)]
            store.add_trajectories(batch, crafted.run_id)
            store.mark_consumed([t.id for t in batch], step)
            crafted.ids[step] = [t.id for t in batch]
            crafted.trajectories.update({t.id: t for t in batch})
            values = {**healthy_metrics(step), **rollout_metrics(batch, version=step), **reward_model_metrics(batch)}
            if step % EVAL_EVERY == 0 or step == steps:
                values["eval/reward"] = evals(step)
            if metrics is not None:
                metrics(step, values)
            store.log_metrics(crafted.run_id, step, values)
    return crafted


@pytest.fixture
def crafted(tmp_path: Path) -> Callable[..., CraftedRun]:
    """`crafted(**options)`: a crafted run directory under this test's tmp_path (see `craft`)."""
    return lambda **options: craft(tmp_path, **options)
