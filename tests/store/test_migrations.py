"""Schema versions: a file written by the v1 schema is brought forward in place, data intact; a
newer file is refused; a failing migration leaves the file at its previous version."""

from __future__ import annotations

import json
import sqlite3
import zlib

import pytest

from forgerl.store import LATEST_VERSION, SchemaVersionError, TrajectoryStore
from forgerl.store.migrations import MIGRATIONS, Migration, migrate, schema_version
from forgerl.types import PROMOTED_METADATA_KEYS, SCHEMA_VERSION, Trajectory

# The v1 schema as an older forgerl wrote it, typed out here independently of migrations.py, so the
# test catches an edit to the released v1 migration as well as a broken upgrade path.
V1_SCHEMA = """
CREATE TABLE runs (id TEXT PRIMARY KEY, created_at REAL NOT NULL, config TEXT NOT NULL, status TEXT NOT NULL);
CREATE TABLE trajectories (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, run_id TEXT NOT NULL REFERENCES runs(id), step INTEGER,
    policy_version INTEGER, task_id TEXT NOT NULL, family TEXT, group_id TEXT, agent_id TEXT NOT NULL,
    status TEXT NOT NULL, reward REAL, n_calls INTEGER NOT NULL, n_tokens INTEGER NOT NULL,
    created_at REAL NOT NULL, payload BLOB NOT NULL, payload_encoding TEXT NOT NULL);
CREATE TABLE metrics (run_id TEXT NOT NULL REFERENCES runs(id), step INTEGER NOT NULL, name TEXT NOT NULL,
    value REAL, time REAL NOT NULL);
CREATE TABLE checkpoints (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(id), step INTEGER NOT NULL,
    path TEXT NOT NULL, policy_version INTEGER, created_at REAL NOT NULL, metadata TEXT NOT NULL);
PRAGMA user_version = 1;
"""


def schema1_json(traj: Trajectory) -> str:
    """The trajectory as forgerl wrote it before schema 2: the structural keys inside metadata and
    an (always empty) top-level `perturbation` field."""
    data = traj.model_dump(mode="json")
    for old_key, field in PROMOTED_METADATA_KEYS.items():
        value = data.pop(field)
        if value is not None:
            data["metadata"][old_key] = value
    data.update(perturbation=None, schema_version=1)
    return json.dumps(data)


def write_v1_file(path, trajectories):
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.execute("INSERT INTO runs VALUES ('old_run', 1.0, '{\"lr\": 0.1}', 'completed')")
    for k, traj in enumerate(trajectories):
        text = schema1_json(traj)
        payload, encoding = (zlib.compress(text.encode()), "zlib") if k % 2 else (text.encode(), "json")
        conn.execute(
            "INSERT INTO trajectories (id, run_id, step, policy_version, task_id, family, group_id, agent_id, status,"
            " reward, n_calls, n_tokens, created_at, payload, payload_encoding)"
            " VALUES (?, 'old_run', 1, 3, ?, ?, ?, 'main', ?, ?, ?, ?, ?, ?, ?)",
            (traj.id, traj.task_id, traj.family, traj.group_id, traj.status.value, traj.reward,
             len(traj.calls), traj.num_completion_tokens, traj.created_at, payload, encoding))
    conn.execute("INSERT INTO metrics VALUES ('old_run', 1, 'loss', 0.25, 2.0)")
    conn.commit()
    conn.close()


def test_v1_file_is_migrated_in_place_with_data_intact(tmp_path, make_traj):
    path = tmp_path / "store.sqlite"
    old = [make_traj(1, difficulty=2), make_traj(2, difficulty=0.5), make_traj(3)]
    old[2].metadata["difficulty"] = "hard"  # v1 never checked the type: the backfill must skip it
    write_v1_file(path, old)

    with TrajectoryStore(tmp_path) as store:
        conn = store._conn()
        assert schema_version(conn) == LATEST_VERSION
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert [store.get_trajectory(t.id) for t in old] == old
        assert {r["id"]: r["difficulty"] for r in store.query_rows()} == {
            "traj_000001": 2.0, "traj_000002": 0.5, "traj_000003": None}
        assert store.metrics("old_run") == [(1, "loss", 0.25)]
        assert store.get_run("old_run").config == {"lr": 0.1}
        # what later versions added works on the migrated file
        store.add_label("traj_000001", "alice", {"score": 1}, rubric_version="r1")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM trajectories")
        store.add_trajectory(make_traj(4, difficulty=1), "old_run")
        assert store.count(run_id="old_run") == 4
    with TrajectoryStore(tmp_path) as store:  # reopening applies nothing twice
        assert schema_version(store._conn()) == LATEST_VERSION


def test_schema1_payloads_open_with_typed_fields_and_export_in_the_current_schema(tmp_path, make_traj):
    """A run directory written before schema 2 (structural keys in metadata): its trajectories load
    with the typed fields set, filters see them, and JSONL exports hold the current schema only."""
    old = make_traj(1, family="tool-reasoning", difficulty=3)
    old.rollout_step, old.end_reason = 7, "final answer"
    old.perturbations = {"version": 1, "seed": 5, "applied": [{"kind": "tool_names", "seed": 1, "params": {}}]}
    write_v1_file(tmp_path / "store.sqlite", [old, make_traj(2)])
    raw_json = json.loads(schema1_json(old))
    assert raw_json["metadata"]["perturbations"] == old.perturbations and "perturbations" not in raw_json

    with TrajectoryStore(tmp_path) as store:
        loaded = store.get_trajectory(old.id)
        assert (loaded.family, loaded.difficulty, loaded.rollout_step, loaded.end_reason) == (
            "tool-reasoning", 3, 7, "final answer")
        assert loaded.perturbations == old.perturbations and loaded.schema_version == SCHEMA_VERSION
        assert not set(PROMOTED_METADATA_KEYS) & set(loaded.metadata)
        assert [r["id"] for r in store.query_rows(family="tool-reasoning")] == [old.id]
        store.export_jsonl(tmp_path / "out.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["schema_version"] for line in lines] == [SCHEMA_VERSION, SCHEMA_VERSION]
    assert lines[0]["perturbations"] == old.perturbations and "perturbations" not in lines[0]["metadata"]
    assert Trajectory.model_validate(lines[0]) == loaded


def test_schema1_legacy_perturbation_field_and_conflicts():
    """The unused schema-1 `perturbation` field is read into `perturbations`; a key given both ways
    with different values is refused instead of one silently winning."""
    t = Trajectory.model_validate({"perturbation": {"tool": "x"}, "schema_version": 1})
    assert t.perturbations == {"tool": "x"}
    with pytest.raises(ValueError, match="family.*typed field"):
        Trajectory.model_validate({"family": "a", "metadata": {"family": "b"}})
    odd = Trajectory.model_validate({"metadata": {"difficulty": "hard", "step": True}})
    assert odd.difficulty is None and odd.metadata == {"difficulty": "hard", "step": True}


def test_fresh_file_is_created_at_the_latest_version(tmp_path):
    with TrajectoryStore(tmp_path) as store:
        conn = store._conn()
        assert schema_version(conn) == LATEST_VERSION == MIGRATIONS[-1].version
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"runs", "trajectories", "metrics", "checkpoints", "labels"} <= tables


def test_file_from_a_newer_forgerl_is_refused(tmp_path):
    with TrajectoryStore(tmp_path):
        pass
    conn = sqlite3.connect(tmp_path / "store.sqlite")
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaVersionError, match="upgrade forgerl"):
        TrajectoryStore(tmp_path)


def test_a_failing_migration_leaves_the_previous_version(tmp_path):
    def explode(conn):
        raise RuntimeError("backfill failed")

    conn = sqlite3.connect(tmp_path / "x.sqlite", isolation_level=None)
    steps = [Migration(1, "t", ("CREATE TABLE t (x INTEGER)",)),
             Migration(2, "bad", ("CREATE TABLE u (y INTEGER)", explode))]
    with pytest.raises(RuntimeError, match="backfill failed"):
        migrate(conn, steps)
    assert schema_version(conn) == 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"t"}  # migration 2's first step was rolled back with it
    assert migrate(conn, steps[:1]) == []


def test_migration_list_must_be_contiguous(tmp_path):
    conn = sqlite3.connect(tmp_path / "x.sqlite", isolation_level=None)
    with pytest.raises(ValueError, match="1, 2, 3"):
        migrate(conn, [Migration(1, "a", ()), Migration(3, "c", ())])


def test_current_payload_json_has_typed_fields_and_ends_with_the_schema_version(tmp_path, make_traj):
    """Exports pass current payloads through untouched when they end with the schema version
    (sqlite._current_schema_json): the writer must keep that shape."""
    with TrajectoryStore(tmp_path) as store:
        run = store.add_run()
        store.add_trajectory(make_traj(1, difficulty=4), run)
        payload, encoding = store._conn().execute("SELECT payload, payload_encoding FROM trajectories").fetchone()
    text = zlib.decompress(payload).decode() if encoding == "zlib" else payload.decode()
    assert json.loads(text)["difficulty"] == 4 and "difficulty" not in json.loads(text)["metadata"]
    assert text.endswith(f'"schema_version":{SCHEMA_VERSION}}}')
