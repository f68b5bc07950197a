"""The store's schema as an ordered list of migrations, versioned in `PRAGMA user_version`.

Why migrations from day one: a run directory outlives the code that wrote it (a months-long run,
a dataset of trajectories shared between teams), so a newer forgerl must open an older file and
bring it forward in place, without an export/import round trip. Each migration runs in its own
`BEGIN IMMEDIATE` transaction together with the `user_version` bump, so a crash mid-migration
leaves the file at the previous version, never half-migrated. A file from a *newer* forgerl is
refused rather than guessed at.

Rules for adding one: append a `Migration` with the next version; never edit a released one;
SQL steps are single statements (they run inside the transaction, which `executescript` would
commit); a step that needs Python (backfilling a column from the JSON payload) is a callable.
If a migration adds a column to `trajectories`, add it to the append-only trigger as well.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from forgerl.store.codec import decode_payload
from forgerl.store.errors import SchemaVersionError

Step = str | Callable[[sqlite3.Connection], None]


@dataclass(frozen=True)
class Migration:
    version: int  # the user_version the file has once this migration is applied
    description: str
    steps: Sequence[Step]


_V1_CORE = (
    """CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        config TEXT NOT NULL,
        status TEXT NOT NULL
    )""",
    """CREATE TABLE trajectories (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        run_id TEXT NOT NULL REFERENCES runs(id),
        step INTEGER,
        policy_version INTEGER,
        task_id TEXT NOT NULL,
        family TEXT,
        group_id TEXT,
        agent_id TEXT NOT NULL,
        status TEXT NOT NULL,
        reward REAL,
        n_calls INTEGER NOT NULL,
        n_tokens INTEGER NOT NULL,
        created_at REAL NOT NULL,
        payload BLOB NOT NULL,
        payload_encoding TEXT NOT NULL
    )""",
    """CREATE TABLE metrics (
        run_id TEXT NOT NULL REFERENCES runs(id),
        step INTEGER NOT NULL,
        name TEXT NOT NULL,
        value REAL,
        time REAL NOT NULL
    )""",
    """CREATE TABLE checkpoints (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id),
        step INTEGER NOT NULL,
        path TEXT NOT NULL,
        policy_version INTEGER,
        created_at REAL NOT NULL,
        metadata TEXT NOT NULL
    )""",
)


def _number_or_none(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _backfill_difficulty(conn: sqlite3.Connection) -> None:
    """Copy metadata["difficulty"] out of every stored payload into the new column.

    Reads the JSON as a plain dict, not through the Trajectory model: a migration must keep working
    after the model changes. Non-numeric difficulties stay NULL (v1 never promised a type).
    """
    rows = conn.execute("SELECT seq, payload, payload_encoding FROM trajectories").fetchall()
    for seq, payload, encoding in rows:
        metadata = json.loads(decode_payload(payload, encoding)).get("metadata") or {}
        difficulty = _number_or_none(metadata.get("difficulty"))
        if difficulty is not None:
            conn.execute("UPDATE trajectories SET difficulty = ? WHERE seq = ?", (difficulty, seq))


_TRAJECTORY_IMMUTABLE_COLUMNS = (
    "seq, id, run_id, policy_version, task_id, family, difficulty, group_id, agent_id, status, reward, "
    "n_calls, n_tokens, created_at, payload, payload_encoding"
)

_V3_LABELS_INDEXES_AND_GUARDS = (
    """CREATE TABLE labels (
        id INTEGER PRIMARY KEY,
        trajectory_id TEXT NOT NULL REFERENCES trajectories(id),
        expert TEXT NOT NULL,
        rubric_version TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX trajectories_by_run_step ON trajectories(run_id, step)",
    "CREATE INDEX trajectories_by_family ON trajectories(family)",
    "CREATE INDEX trajectories_by_status ON trajectories(status)",
    "CREATE INDEX trajectories_by_reward ON trajectories(reward)",
    "CREATE INDEX trajectories_by_created ON trajectories(created_at)",
    "CREATE INDEX metrics_by_run_name_step ON metrics(run_id, name, step)",
    "CREATE INDEX checkpoints_by_run_step ON checkpoints(run_id, step)",
    "CREATE INDEX labels_by_trajectory ON labels(trajectory_id)",
    # Append-only, enforced by the file itself so that no code path (nor a hand-typed UPDATE in the
    # sqlite3 shell) can rewrite training data: the one allowed update is setting a NULL step.
    f"""CREATE TRIGGER trajectories_no_rewrite BEFORE UPDATE OF {_TRAJECTORY_IMMUTABLE_COLUMNS} ON trajectories
    BEGIN SELECT RAISE(ABORT, 'trajectories are append-only: only mark_consumed may set their step'); END""",
    """CREATE TRIGGER trajectories_step_set_once BEFORE UPDATE OF step ON trajectories
    WHEN OLD.step IS NOT NULL AND NEW.step IS NOT OLD.step
    BEGIN SELECT RAISE(ABORT, 'a trajectory''s step is set once, by mark_consumed'); END""",
    """CREATE TRIGGER trajectories_no_delete BEFORE DELETE ON trajectories
    BEGIN SELECT RAISE(ABORT, 'trajectories are append-only: they are never deleted'); END""",
    """CREATE TRIGGER labels_no_rewrite BEFORE UPDATE ON labels
    BEGIN SELECT RAISE(ABORT, 'labels are append-only: add a new label instead'); END""",
    """CREATE TRIGGER labels_no_delete BEFORE DELETE ON labels
    BEGIN SELECT RAISE(ABORT, 'labels are append-only: they are never deleted'); END""",
)

_V4_EXPERT_LABELS = (
    # What a label is (a rubric score, an A/B preference, a step comment) and, for a preference, the
    # other trajectory of the pair. Labels written before v4 keep kind 'other'.
    "ALTER TABLE labels ADD COLUMN kind TEXT NOT NULL DEFAULT 'other'",
    "ALTER TABLE labels ADD COLUMN other_trajectory_id TEXT REFERENCES trajectories(id)",
    # Re-labelling appends a new label that names the one it replaces; the file refuses a label
    # that supersedes another expert's label, so no code path can change someone else's judgement.
    "ALTER TABLE labels ADD COLUMN supersedes INTEGER REFERENCES labels(id)",
    "CREATE INDEX labels_by_expert ON labels(expert, kind)",
    "CREATE INDEX labels_by_other ON labels(other_trajectory_id)",
    "CREATE UNIQUE INDEX labels_superseded_once ON labels(supersedes) WHERE supersedes IS NOT NULL",
    """CREATE TRIGGER labels_supersede_own_only BEFORE INSERT ON labels
    WHEN NEW.supersedes IS NOT NULL AND (SELECT expert FROM labels WHERE id = NEW.supersedes) IS NOT NEW.expert
    BEGIN SELECT RAISE(ABORT, 'an expert can only supersede their own labels'); END""",
    # Accounts of the experts who may sign in to the review app (password hashes only).
    """CREATE TABLE experts (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
)

_V5_SUPERSEDED = (
    # A resume from the checkpoint of step C redoes the steps after C. What the run recorded for them
    # (trajectories trained on or collected there, their metrics, later checkpoints) stays in the
    # file, but is marked superseded (when: a time), so queries, exports, reports and the next
    # resume see each step once. The mark is set once and a superseded trajectory is never trained on.
    "ALTER TABLE trajectories ADD COLUMN superseded_at REAL",
    "ALTER TABLE metrics ADD COLUMN superseded_at REAL",
    "ALTER TABLE checkpoints ADD COLUMN superseded_at REAL",
    """CREATE TRIGGER trajectories_superseded_once BEFORE UPDATE OF superseded_at ON trajectories
    WHEN OLD.superseded_at IS NOT NULL AND NEW.superseded_at IS NOT OLD.superseded_at
    BEGIN SELECT RAISE(ABORT, 'a trajectory is superseded once; the mark is never changed or removed'); END""",
    """CREATE TRIGGER trajectories_superseded_not_trained BEFORE UPDATE OF step ON trajectories
    WHEN OLD.superseded_at IS NOT NULL AND NEW.step IS NOT OLD.step
    BEGIN SELECT RAISE(ABORT, 'a superseded trajectory is never trained on'); END""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "runs, trajectories, metrics, checkpoints", _V1_CORE),
    Migration(2, "trajectories.difficulty, backfilled from metadata",
              ("ALTER TABLE trajectories ADD COLUMN difficulty REAL", _backfill_difficulty)),
    Migration(3, "labels table, query indexes, append-only triggers", _V3_LABELS_INDEXES_AND_GUARDS),
    Migration(4, "label kinds, preference pairs, own-only superseding; expert accounts", _V4_EXPERT_LABELS),
    Migration(5, "superseded marks on trajectories, metrics and checkpoints (exact resume)", _V5_SUPERSEDED),
)

LATEST_VERSION = MIGRATIONS[-1].version


def _check_migration_list(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1, 2, 3, ... in order, got {versions}")


_check_migration_list(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Bring the file up to the last migration; returns the versions applied (empty if current).

    `conn` must be in autocommit mode (isolation_level=None). Safe against concurrent openers:
    the version is re-read under the write lock, so two processes never apply the same migration.
    """
    _check_migration_list(migrations)
    latest = migrations[-1].version if migrations else 0
    applied: list[int] = []
    for migration in migrations:
        if schema_version(conn) >= migration.version:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = schema_version(conn)  # another process may have migrated while we waited
            if current < migration.version:
                for step in migration.steps:
                    if callable(step):
                        step(conn)
                    else:
                        conn.execute(step)
                conn.execute(f"PRAGMA user_version = {int(migration.version)}")
                applied.append(migration.version)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    found = schema_version(conn)
    if found > latest:
        raise SchemaVersionError(
            f"the store's schema is version {found} but this forgerl knows versions up to {latest}: "
            "it was written by a newer forgerl; upgrade forgerl to open it"
        )
    return applied
