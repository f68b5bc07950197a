"""The store's contract: exact round trips, append-only writes, queries, metrics, checkpoints,
labels, and clear errors for bad input."""

from __future__ import annotations

import math
import sqlite3

import pytest

from forgerl.store import (
    STORE_FILENAME,
    DuplicateTrajectoryError,
    StoreError,
    TrajectoryStore,
    UnknownRecordError,
)
from forgerl.types import TrajectoryStatus


def raw(store: TrajectoryStore) -> sqlite3.Connection:
    """A second, independent connection to the file: what another process would see."""
    return sqlite3.connect(store.path, isolation_level=None)


# -- opening ---------------------------------------------------------------------------------------

def test_run_dir_gets_one_wal_store_file_with_full_sync(tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    with TrajectoryStore(run_dir) as store:
        assert store.path == run_dir / STORE_FILENAME
        conn = store._conn()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert run_dir.joinpath(STORE_FILENAME).is_file()


def test_explicit_file_path_and_reopen_keeps_data(tmp_path, make_traj):
    path = tmp_path / "data" / "mine.sqlite"
    with TrajectoryStore(path) as store:
        run = store.add_run()
        store.add_trajectory(make_traj(1), run)
    with TrajectoryStore(path) as store:
        assert store.get_trajectory("traj_000001") == make_traj(1)


def test_bad_paths_say_what_to_pass(tmp_path):
    not_a_store = tmp_path / "notes.txt"
    not_a_store.write_text("hello")
    with pytest.raises(StoreError, match="run directory"):
        TrajectoryStore(not_a_store)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="not a usable forgerl store"):
        TrajectoryStore(garbage)
    with pytest.raises(StoreError, match="in-memory"):
        TrajectoryStore(":memory:")


def test_closed_store_refuses_calls(tmp_path):
    store = TrajectoryStore(tmp_path)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.add_run()


# -- trajectories ----------------------------------------------------------------------------------

@pytest.mark.parametrize("tokens_per_call", [4, 2000])  # plain JSON and zlib-compressed payloads
def test_trajectory_round_trips_exactly(store, run_id, make_traj, tokens_per_call):
    traj = make_traj(5, tokens_per_call=tokens_per_call, difficulty=0.25)
    store.add_trajectory(traj, run_id)
    assert store.get_trajectory(traj.id) == traj
    encoding = raw(store).execute("SELECT payload_encoding FROM trajectories").fetchone()[0]
    assert encoding == ("zlib" if tokens_per_call > 100 else "json")


def test_summary_columns_come_from_the_trajectory(store, run_id, make_traj):
    traj = make_traj(9, n_calls=3, tokens_per_call=7, difficulty=3, policy_versions=[8, 5, 6], reward=0.5)
    store.add_trajectory(traj, run_id, step=2)
    [row] = store.query_rows()
    assert row == {"id": traj.id, "run_id": run_id, "step": 2, "policy_version": 5, "task_id": traj.task_id,
                   "family": "arithmetic", "difficulty": 3.0, "group_id": traj.group_id, "agent_id": "main",
                   "status": "completed", "reward": 0.5, "n_calls": 3, "n_tokens": 21,
                   "created_at": traj.created_at}


def test_trajectory_without_calls_or_family(store, run_id, make_traj):
    traj = make_traj(1, n_calls=0, family=None, reward=None)
    store.add_trajectory(traj, run_id)
    [row] = store.query_rows()
    assert (row["policy_version"], row["family"], row["reward"], row["n_tokens"]) == (None, None, None, 0)
    assert store.get_trajectory(traj.id) == traj


def test_duplicate_id_is_refused_and_the_first_copy_kept(store, run_id, make_traj):
    store.add_trajectory(make_traj(1, reward=1.0), run_id)
    with pytest.raises(DuplicateTrajectoryError, match="append-only"):
        store.add_trajectory(make_traj(1, reward=0.0), run_id)
    assert store.get_trajectory("traj_000001").reward == 1.0


def test_add_trajectories_is_all_or_nothing(store, run_id, make_traj):
    store.add_trajectory(make_traj(3), run_id)
    with pytest.raises(DuplicateTrajectoryError, match="traj_000003"):
        store.add_trajectories([make_traj(1), make_traj(2), make_traj(3)], run_id)
    assert store.count() == 1 and "traj_000001" not in store
    store.add_trajectories([make_traj(1), make_traj(2)], run_id)
    assert store.count() == 3


def test_unknown_run_is_refused(store, make_traj):
    with pytest.raises(UnknownRecordError, match="add_run"):
        store.add_trajectory(make_traj(1), "no_such_run")
    with pytest.raises(UnknownRecordError, match="traj_404"):
        store.get_trajectory("traj_404")


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: setattr(t, "reward", math.nan), "reward is nan"),
    (lambda t: t.reward_breakdown.update(x=math.inf), "reward_breakdown"),
    (lambda t: t.calls[0].completion_logprobs.__setitem__(0, -math.inf), "non-finite completion logprob"),
    (lambda t: setattr(t, "difficulty", math.inf), "difficulty must be a finite number"),
    (lambda t: setattr(t, "family", 3), "family must be a string"),
    # schema 2: a writer that still puts a structural key into metadata is told which field to set
    (lambda t: t.metadata.update(family="x"), r"metadata keys \['family'\].*set trajectory.family"),
    (lambda t: t.metadata.update(perturbations={}, step=3), r"trajectory.perturbations, trajectory.rollout_step"),
    (lambda t: t.metadata.update(blob=object()), "JSON"),
])
def test_trajectories_that_would_not_round_trip_are_refused(store, run_id, make_traj, change, message):
    traj = make_traj(1)
    change(traj)
    with pytest.raises(StoreError, match=message):
        store.add_trajectory(traj, run_id)
    assert store.count() == 0


def test_the_file_itself_refuses_rewrites_and_deletes(store, run_id, make_traj):
    store.add_trajectory(make_traj(1), run_id)
    conn = raw(store)
    for sql in ("UPDATE trajectories SET reward = 0", "UPDATE trajectories SET payload = x'00'",
                "DELETE FROM trajectories"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(sql)
    conn.execute("UPDATE trajectories SET step = 4")  # setting a NULL step is the allowed update
    with pytest.raises(sqlite3.IntegrityError, match="set once"):
        conn.execute("UPDATE trajectories SET step = 5")
    conn.close()
    assert store.get_trajectory("traj_000001") == make_traj(1)


# -- mark_consumed ---------------------------------------------------------------------------------

def test_mark_consumed_sets_step_once(store, run_id, make_traj):
    store.add_trajectories([make_traj(i) for i in range(4)], run_id)
    store.mark_consumed(["traj_000000", "traj_000001"], step=7)
    store.mark_consumed(["traj_000001"], step=7)  # a retried step is a no-op
    assert [r["id"] for r in store.query_rows(step=7)] == ["traj_000000", "traj_000001"]
    assert [r["id"] for r in store.query_rows(consumed=False)] == ["traj_000002", "traj_000003"]
    with pytest.raises(StoreError, match="already consumed"):
        store.mark_consumed(["traj_000002", "traj_000001"], step=8)
    with pytest.raises(UnknownRecordError, match="traj_nope"):
        store.mark_consumed(["traj_000003", "traj_nope"], step=8)
    assert store.count(consumed=True) == 2  # the failed calls changed nothing
    with pytest.raises(StoreError, match="list"):
        store.mark_consumed("traj_000003", step=8)


def test_mark_consumed_handles_more_ids_than_one_sql_statement_binds(store, run_id, make_traj):
    store.add_trajectories([make_traj(i, n_calls=0) for i in range(1200)], run_id)
    store.mark_consumed([f"traj_{i:06d}" for i in range(1100)], step=1)
    assert store.count(step=1) == 1100 and store.count(consumed=False) == 100


# -- queries ---------------------------------------------------------------------------------------

@pytest.fixture()
def populated(store, make_traj):
    """12 trajectories over two runs: families alternate, rewards 0.0, 0.1, ..., statuses vary."""
    run_a = store.add_run(run_id="a")
    run_b = store.add_run(run_id="b")
    statuses = [TrajectoryStatus.COMPLETED, TrajectoryStatus.TRUNCATED, TrajectoryStatus.FAILED]
    for i in range(12):
        traj = make_traj(i, family="math" if i % 2 == 0 else "code", reward=round(i / 10, 1),
                         status=statuses[i % 3], created_at=1000.0 - i)
        store.add_trajectory(traj, run_a if i < 8 else run_b, step=i // 4)
    return store


def ids(rows):
    return sorted(int(r["id"].split("_")[1]) for r in rows)


@pytest.mark.parametrize(("filters", "expected"), [
    ({}, list(range(12))),
    ({"run_id": "b"}, [8, 9, 10, 11]),
    ({"step": 1}, [4, 5, 6, 7]),
    ({"family": "code"}, [1, 3, 5, 7, 9, 11]),
    ({"status": "failed"}, [2, 5, 8, 11]),
    ({"status": TrajectoryStatus.TRUNCATED}, [1, 4, 7, 10]),
    ({"min_reward": 0.5}, [5, 6, 7, 8, 9, 10, 11]),
    ({"max_reward": 0.2}, [0, 1, 2]),
    ({"min_reward": 0.3, "max_reward": 0.6, "family": "math"}, [4, 6]),
    ({"run_id": "a", "status": "completed", "family": "math"}, [0, 6]),
    ({"family": "nope"}, []),
])
def test_query_filters(populated, filters, expected):
    assert ids(populated.query_rows(**filters)) == expected
    assert sorted(int(t.id.split("_")[1]) for t in populated.query(**filters)) == expected
    assert populated.count(**filters) == len(expected)


def test_query_order_and_limit(populated):
    assert [r["id"] for r in populated.query_rows(limit=3)] == ["traj_000011", "traj_000010", "traj_000009"]
    assert [t.id for t in populated.query(order="stored", limit=2)] == ["traj_000000", "traj_000001"]
    assert [r["reward"] for r in populated.query_rows(order="-reward", limit=2)] == [1.1, 1.0]
    assert populated.query_rows(limit=0) == []


@pytest.mark.parametrize(("filters", "message"), [
    ({"order": "random"}, "unknown order"),
    ({"status": "ok"}, "unknown trajectory status"),
    ({"limit": -1}, "limit"),
    ({"min_reward": "high"}, "min_reward"),
    ({"step": -2}, "step"),
])
def test_bad_query_arguments_are_explained(populated, filters, message):
    with pytest.raises(StoreError, match=message):
        populated.query_rows(**filters)


def test_null_rewards_are_excluded_by_reward_filters_only(store, run_id, make_traj):
    store.add_trajectories([make_traj(1, reward=None), make_traj(2, reward=0.0)], run_id)
    assert ids(store.query_rows(min_reward=-1.0)) == [2]
    assert ids(store.query_rows()) == [1, 2]


# -- runs, metrics, checkpoints, labels ------------------------------------------------------------

def test_runs(store):
    run = store.add_run({"lr": 1e-4, "nested": {"w": 0.3}})
    assert store.get_run(run).config == {"lr": 1e-4, "nested": {"w": 0.3}}
    assert store.get_run(run).status == "running"
    store.set_run_status(run, "completed")
    assert [(r.id, r.status) for r in store.runs()] == [(run, "completed")]
    with pytest.raises(StoreError, match="already exists"):
        store.add_run(run_id=run)
    with pytest.raises(StoreError, match="unknown run status"):
        store.set_run_status(run, "done")
    with pytest.raises(StoreError, match="JSON"):
        store.add_run({"lr": math.nan})
    with pytest.raises(UnknownRecordError):
        store.set_run_status("ghost", "failed")


def test_run_config_from_a_pydantic_model(store):
    from pydantic import BaseModel

    class Config(BaseModel):
        lr: float = 3e-4
        loss: str = "cispo"

    assert store.get_run(store.add_run(Config())).config == {"lr": 3e-4, "loss": "cispo"}


def test_metrics(store, run_id):
    store.log_metrics(run_id, 0, {"loss": 1.5, "reward": 0.1})
    store.log_metrics(run_id, 1, {"loss": math.nan, "reward": 0.4})
    store.log_metrics(run_id, 2, {"loss": 0.5})
    assert store.metrics(run_id, "reward") == [(0, "reward", 0.1), (1, "reward", 0.4)]
    rows = store.metrics(run_id)
    assert [(s, n) for s, n, _ in rows] == [(0, "loss"), (0, "reward"), (1, "loss"), (1, "reward"), (2, "loss")]
    assert math.isnan(rows[2][2])
    with pytest.raises(StoreError, match="real number"):
        store.log_metrics(run_id, 3, {"loss": "low"})
    with pytest.raises(UnknownRecordError):
        store.log_metrics("ghost", 3, {"loss": 1.0})
    assert len(store.metrics(run_id)) == 5


def test_checkpoints(store, run_id):
    assert store.latest_checkpoint(run_id) is None
    store.add_checkpoint(run_id, 10, "ckpt/10", policy_version=10, metadata={"loss": 0.5})
    store.add_checkpoint(run_id, 30, "ckpt/30", policy_version=30)
    store.add_checkpoint(run_id, 20, "ckpt/20")
    latest = store.latest_checkpoint(run_id)
    assert (latest.step, latest.path, latest.policy_version, latest.metadata) == (30, "ckpt/30", 30, {})
    assert [c.step for c in store.checkpoints(run_id)] == [10, 20, 30]
    assert store.checkpoints(run_id)[0].metadata == {"loss": 0.5}
    with pytest.raises(UnknownRecordError):
        store.add_checkpoint("ghost", 1, "x")


def test_labels_are_append_only(store, run_id, make_traj):
    store.add_trajectory(make_traj(1), run_id)
    first = store.add_label("traj_000001", "alice", {"score": 3, "note": "ok"}, rubric_version="v1")
    store.add_label("traj_000001", "bob", {"score": 4}, rubric_version="v1")
    labels = store.labels("traj_000001")
    assert [(lab.id, lab.expert, lab.payload) for lab in labels] == [
        (first, "alice", {"score": 3, "note": "ok"}), (first + 1, "bob", {"score": 4})]
    with pytest.raises(UnknownRecordError):
        store.add_label("traj_404", "alice", {}, rubric_version="v1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw(store).execute("UPDATE labels SET expert = 'mallory'")
