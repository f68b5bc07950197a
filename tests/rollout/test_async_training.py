"""`run_async_training`: the trainer's real step fed by the windowed scheduler, end to end on a
tiny model (rollouts continue while the optimizer runs in a worker thread)."""

from __future__ import annotations

import collections

import pytest

from forgerl.rollout.scheduler import SchedulerConfig
from forgerl.store import TrajectoryStore
from forgerl.train.config import TrainConfig
from forgerl.training import run_async_training


@pytest.mark.slow  # ~35 s of CPU (two evaluations and three real steps on a tiny model)
def test_async_training_runs_steps_within_the_staleness_bound(tmp_path):
    config = TrainConfig(model="tiny-random", env="arithmetic", difficulty=[1], steps=3, groups_per_step=2,
                         group_size=2, max_turns=2, max_tokens=12, max_context=1024, eval={"every": 10, "tasks": 2},
                         checkpoint_every=3, run_dir=str(tmp_path / "run"))
    seen: list[dict[str, float]] = []
    result = run_async_training(config, SchedulerConfig(batch_size=2, capacity=4, max_staleness=2),
                                on_step=lambda step, m: seen.append(m))
    assert [s for s, _ in result.eval_rewards] == [0, 3]
    assert len(seen) == 3 and all(m["scheduler/staleness_max"] <= 2 for m in seen)
    with TrajectoryStore(tmp_path / "run") as store:
        consumed = store.query(consumed=True)
        steps = collections.Counter(row["step"] for row in store.query_rows(consumed=True))
        assert steps == {1: 4, 2: 4, 3: 4}  # two groups of two per step, each trained on once
        assert all(len({t.group_id for t in consumed if t.group_id == g}) == 1 for g in {t.group_id for t in consumed})
        assert store.latest_checkpoint(store.runs()[0].id).step == 3


def test_advantage_groups_split_agents_by_role():
    from forgerl.rollout.source import advantage_groups
    from forgerl.types import Trajectory

    main = [Trajectory(), Trajectory()]
    assert advantage_groups(main) == [main]
    coord = [Trajectory(agent_id="coordinator") for _ in range(2)]
    subs = [Trajectory(agent_id=f"sub-{i}") for i in range(3)]
    assert advantage_groups([coord[0], subs[0], subs[1], coord[1], subs[2]]) == [coord, subs]
