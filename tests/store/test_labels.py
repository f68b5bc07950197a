"""Label kinds, preference pairs, own-only superseding and expert accounts (migration v4)."""

from __future__ import annotations

import sqlite3

import pytest

from forgerl.store import StoreError, TrajectoryStore, UnknownRecordError


def _raw(store: TrajectoryStore) -> sqlite3.Connection:
    return store._conn()


def test_kinds_and_preference_pairs(store, run_id, make_traj):
    store.add_trajectories([make_traj(1), make_traj(2), make_traj(3)], run_id)
    r = store.add_label("traj_000001", "alice", {"scores": {"correct": 4}}, rubric_version="v1", kind="rubric")
    p = store.add_label("traj_000001", "alice", {"winner": "b", "reason": "shorter"}, rubric_version="v1",
                        kind="preference", other_trajectory_id="traj_000002")
    store.add_label("traj_000003", "bob", {"step": 1, "text": "hm"}, rubric_version="v1", kind="comment")
    # a preference is found from either side
    assert [lab.id for lab in store.labels("traj_000002")] == [p]
    assert [lab.id for lab in store.labels("traj_000001", kind="rubric")] == [r]
    assert store.get_label(p).other_trajectory_id == "traj_000002"
    assert [lab.expert for lab in store.labels(kind="comment")] == ["bob"]
    assert [lab.kind for lab in store.labels(expert="alice")] == ["rubric", "preference"]


def test_bad_labels_are_refused(store, run_id, make_traj):
    store.add_trajectories([make_traj(1), make_traj(2)], run_id)
    with pytest.raises(StoreError, match="unknown label kind"):
        store.add_label("traj_000001", "alice", {}, rubric_version="v1", kind="vibes")
    with pytest.raises(StoreError, match="needs other_trajectory_id"):
        store.add_label("traj_000001", "alice", {}, rubric_version="v1", kind="preference")
    with pytest.raises(StoreError, match="two different"):
        store.add_label("traj_000001", "alice", {}, rubric_version="v1", kind="preference",
                        other_trajectory_id="traj_000001")
    with pytest.raises(UnknownRecordError, match="traj_404"):
        store.add_label("traj_000001", "alice", {}, rubric_version="v1", kind="preference",
                        other_trajectory_id="traj_404")
    with pytest.raises(UnknownRecordError, match="no label"):
        store.add_label("traj_000001", "alice", {}, rubric_version="v1", supersedes=999)


def test_an_expert_supersedes_only_their_own_labels(store, run_id, make_traj):
    store.add_trajectory(make_traj(1), run_id)
    a1 = store.add_label("traj_000001", "alice", {"s": 1}, rubric_version="v1", kind="rubric")
    b1 = store.add_label("traj_000001", "bob", {"s": 5}, rubric_version="v1", kind="rubric")
    with pytest.raises(StoreError, match="belongs to expert 'alice'"):
        store.add_label("traj_000001", "bob", {"s": 2}, rubric_version="v1", kind="rubric", supersedes=a1)
    # the file itself refuses it too, whatever code path writes
    with pytest.raises(sqlite3.IntegrityError, match="own labels"):
        _raw(store).execute("INSERT INTO labels (trajectory_id, expert, rubric_version, payload, created_at, kind, "
                            "supersedes) VALUES ('traj_000001', 'bob', 'v1', '{}', 0, 'rubric', ?)", (a1,))
    a2 = store.add_label("traj_000001", "alice", {"s": 2}, rubric_version="v2", kind="rubric", supersedes=a1)
    with pytest.raises(StoreError, match="already superseded"):
        store.add_label("traj_000001", "alice", {"s": 3}, rubric_version="v2", kind="rubric", supersedes=a1)
    assert [lab.id for lab in store.labels("traj_000001", current_only=True)] == [b1, a2]
    assert [lab.id for lab in store.labels("traj_000001")] == [a1, b1, a2]  # history is kept
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        _raw(store).execute("UPDATE labels SET payload = '{}' WHERE id = ?", (b1,))


def test_expert_accounts(store):
    store.add_expert("alice", "hash-a")
    assert store.get_expert("alice").password_hash == "hash-a"
    assert store.get_expert("nobody") is None
    with pytest.raises(StoreError, match="already exists"):
        store.add_expert("alice", "x")
    store.set_expert_password("alice", "hash-b")
    assert store.get_expert("alice").password_hash == "hash-b"
    with pytest.raises(UnknownRecordError):
        store.set_expert_password("bob", "x")
    assert store.experts() == ["alice"]


def test_v3_labels_survive_the_v4_migration(tmp_path, make_traj):
    from forgerl.store.migrations import MIGRATIONS, migrate

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, MIGRATIONS[:3])
    conn.execute("INSERT INTO runs VALUES ('r', 0, '{}', 'running')")
    conn.execute("INSERT INTO trajectories (id, run_id, task_id, agent_id, status, n_calls, n_tokens, created_at, "
                 "payload, payload_encoding) VALUES ('t', 'r', 'task', 'main', 'completed', 0, 0, 0, '{}', 'json')")
    conn.execute("INSERT INTO labels (trajectory_id, expert, rubric_version, payload, created_at) "
                 "VALUES ('t', 'alice', 'r1', '{\"score\": 1}', 0)")
    conn.close()
    with TrajectoryStore(path) as store:
        (label,) = store.labels("t")
        assert (label.kind, label.payload, label.supersedes) == ("other", {"score": 1}, None)
