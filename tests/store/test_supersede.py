"""Exact resume in the store: what a resume redoes is marked superseded (kept in the file, set
once, never trained on), and every reader — queries, counts, metrics, checkpoints, exports, the
summary — sees each step once."""

from __future__ import annotations

import collections
import sqlite3

import pytest

from forgerl.store import StoreError, TrajectoryStore
from forgerl.store.run_dir import export_store, summarize_store


@pytest.fixture()
def crashed_run(tmp_path, make_traj):
    """Steps 1-3 trained (2 trajectories each), step 4's rollouts stored but not trained on,
    metrics for steps 0-3, checkpoints at 2 and 3: then the process died."""
    store = TrajectoryStore(tmp_path)
    run_id = store.add_run(run_id="r")
    for step in (1, 2, 3, 4):
        trajs = [make_traj(10 * step + k, reward=1.0) for k in range(2)]
        store.add_trajectories(trajs, run_id)
        if step < 4:
            store.mark_consumed([t.id for t in trajs], step)
    for step in range(4):
        store.log_metrics(run_id, step, {"rollout/reward": float(step)})
    for step in (2, 3):
        store.add_checkpoint(run_id, step, tmp_path / f"checkpoints/step_{step:06d}")
    yield store, run_id
    store.close()


def test_resuming_from_step_2_supersedes_steps_3_and_4_everywhere(crashed_run, tmp_path):
    store, run_id = crashed_run
    counts = store.supersede_from(run_id, 3, unconsumed=True)
    assert counts == {"trajectories": 4, "metrics": 1, "checkpoints": 1}
    assert collections.Counter(r["step"] for r in store.query_rows(run_id=run_id)) == {1: 2, 2: 2}
    assert store.count(run_id=run_id) == 4 and store.count(run_id=run_id, superseded=True) == 4
    assert store.count(run_id=run_id, superseded=None) == 8  # kept in the file, for the record
    assert store.query(consumed=False) == []
    assert [s for s, _, _ in store.metrics(run_id)] == [0, 1, 2]
    assert [s for s, _, _ in store.metrics(run_id, superseded=True)] == [3]
    assert store.latest_checkpoint(run_id).step == 2
    assert [c.step for c in store.checkpoints(run_id, superseded=None)] == [2, 3]

    # the redone step 3 is logged again: each step once
    store.add_trajectories(redone := [t.model_copy(update={"id": t.id + "-again"}) for t in store.query(step=1)], run_id)
    store.mark_consumed([t.id for t in redone], 3)
    store.log_metrics(run_id, 3, {"rollout/reward": 3.5})
    assert [v for s, _, v in store.metrics(run_id) if s == 3] == [3.5]
    assert export_store(tmp_path, "jsonl")[1] == 6
    [summary] = summarize_store(tmp_path)
    assert (summary["trajectories"], summary["consumed"], summary["superseded"]) == (6, 6, 4)
    assert summary["latest_checkpoint_step"] == 2


def test_the_async_loop_keeps_untrained_rollouts_live(crashed_run):
    store, run_id = crashed_run
    assert store.supersede_from(run_id, 3, unconsumed=False)["trajectories"] == 2
    assert len(store.query(run_id=run_id, consumed=False)) == 2  # step 4's rollouts: offered again by the ledger


def test_a_superseded_trajectory_is_never_trained_on_and_its_mark_is_set_once(crashed_run):
    store, run_id = crashed_run
    store.supersede_from(run_id, 3, unconsumed=True)
    untrained = store.query_rows(run_id=run_id, consumed=False, superseded=True)[0]["id"]
    with pytest.raises(StoreError, match="superseded by a resume"):
        store.mark_consumed([untrained], 5)
    conn = store._conn()
    with pytest.raises(sqlite3.IntegrityError, match="never trained on"):
        conn.execute("UPDATE trajectories SET step = 5 WHERE id = ?", (untrained,))
    with pytest.raises(sqlite3.IntegrityError, match="superseded once"):
        conn.execute("UPDATE trajectories SET superseded_at = NULL WHERE id = ?", (untrained,))


def test_supersede_trajectories_takes_untrained_ones_only(crashed_run):
    store, run_id = crashed_run
    trained = store.query_rows(run_id=run_id, step=1)[0]["id"]
    untrained = [r["id"] for r in store.query_rows(run_id=run_id, consumed=False)]
    with pytest.raises(StoreError, match="were trained on"):
        store.supersede_trajectories([trained, *untrained])
    assert store.count(run_id=run_id, superseded=True) == 0  # all or nothing
    assert store.supersede_trajectories(untrained) == 2
    assert store.supersede_trajectories(untrained) == 0  # already marked: a no-op
