"""The durable trajectory store: one SQLite file per run directory, in WAL mode.

Why SQLite: a single file that needs no server, survives `kill -9` and power loss when its commits
are synced, lets readers (the trainer, the review UI, an export) run while rollout workers write,
and is readable with the stock `sqlite3` shell.

Durability. "Acknowledged" means a write method returned; by then its transaction is committed
and the WAL is fsynced. We run WAL with `synchronous=FULL`: in WAL mode `NORMAL` already survives
a killed *process* (the committed frames sit in the OS page cache), but a power cut or kernel panic
can lose the last commits, which would break the promise. FULL costs one fsync per commit; batch
writers amortise it with `add_trajectories` (one transaction for a whole group).

Append-only. Trajectories and labels are never rewritten or deleted; the updates allowed are
`mark_consumed` setting a trajectory's training step once, and a resume marking what it redoes as
superseded, once (`supersede_from`: exact resume, see train/checkpoint.py). SQLite triggers
(migrations v3, v5) enforce this in the file itself. Superseded records stay in the file for the
record; every query leaves them out unless asked (`superseded=True` or `None`).

Threads and asyncio. Each thread gets its own connection (WAL lets readers run beside the one
writer; writers queue on the file lock with a busy timeout). Every write is a short transaction,
so calling it from a coroutine blocks the loop for about one fsync; `AsyncTrajectoryStore` in
`forgerl.store.aio` moves the calls to worker threads where even that matters.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from forgerl.store.codec import decode_payload, encode_payload
from forgerl.store.errors import (
    DuplicateTrajectoryError,
    StorageError,
    StorageFullError,
    StoreError,
    UnknownRecordError,
)
from forgerl.store.migrations import migrate
from forgerl.types import PROMOTED_METADATA_KEYS, SCHEMA_VERSION, Trajectory, TrajectoryStatus, new_id

STORE_FILENAME = "store.sqlite"
_FILE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
_ID_CHUNK = 500  # ids per `IN (...)` query: far below SQLite's bound-parameter limit

LABEL_KINDS: tuple[str, ...] = ("rubric", "preference", "comment", "other")
RunStatus = Literal["running", "completed", "failed", "interrupted"]
RUN_STATUSES: tuple[str, ...] = ("running", "completed", "failed", "interrupted")
Order = Literal["created", "-created", "stored", "reward", "-reward", "step"]
_ORDER_SQL: dict[str, str] = {
    "created": "created_at, seq",
    "-created": "created_at DESC, seq DESC",
    "stored": "seq",
    "reward": "reward, seq",
    "-reward": "reward DESC, seq",
    "step": "step, seq",
}
# The indexed columns beside each payload. policy_version = the oldest version among the calls
# (what staleness is measured from); n_tokens = sampled (completion) tokens over all calls; step =
# the training step that consumed the trajectory (NULL until mark_consumed).
SUMMARY_COLUMNS: tuple[str, ...] = (
    "id", "run_id", "step", "policy_version", "task_id", "family", "difficulty", "group_id", "agent_id",
    "status", "reward", "n_calls", "n_tokens", "created_at",
)


@dataclass(frozen=True)
class RunRecord:
    id: str
    created_at: float
    config: dict[str, Any]
    status: str


@dataclass(frozen=True)
class CheckpointRecord:
    id: int
    run_id: str
    step: int
    path: str
    policy_version: int | None
    created_at: float
    metadata: dict[str, Any]


@dataclass(frozen=True)
class LabelRecord:
    id: int
    trajectory_id: str
    expert: str
    rubric_version: str
    payload: dict[str, Any]
    created_at: float
    kind: str = "other"  # one of LABEL_KINDS
    other_trajectory_id: str | None = None  # a preference's second trajectory (payload says which won)
    supersedes: int | None = None  # the same expert's earlier label this one replaces


@dataclass(frozen=True)
class ExpertRecord:
    name: str
    password_hash: str
    created_at: float


def resolve_store_path(path_or_run_dir: str | os.PathLike[str]) -> Path:
    """`<run_dir>/store.sqlite` for a directory (created if missing), or the path itself when it
    names a `.sqlite` / `.sqlite3` / `.db` file."""
    path = Path(path_or_run_dir)
    if str(path_or_run_dir) in ("", ":memory:"):
        raise StoreError("the store needs a run directory or a .sqlite file path (in-memory stores are not durable)")
    if path.suffix in _FILE_SUFFIXES:
        if path.is_dir():
            raise StoreError(f"{path} is a directory: pass the run directory itself or a file path")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} is a file without a {'/'.join(_FILE_SUFFIXES)} suffix: "
                         "pass a run directory or a store file such as run/store.sqlite")
    path.mkdir(parents=True, exist_ok=True)
    return path / STORE_FILENAME


@dataclass(frozen=True)
class _Summary:
    """The indexed columns of one trajectory, derived from it once at insert time."""

    values: tuple[Any, ...]
    payload: bytes
    encoding: str


class TrajectoryStore:
    """Append-only store of runs, trajectories, per-step metrics, checkpoint metadata and labels.

    `TrajectoryStore(run_dir)` opens (or creates) `run_dir/store.sqlite` and migrates it to the
    current schema. Use it as a context manager or call `close()`.
    """

    def __init__(self, path_or_run_dir: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> None:
        if busy_timeout_s <= 0:
            raise StoreError(f"busy_timeout_s must be positive, got {busy_timeout_s}")
        self.path = resolve_store_path(path_or_run_dir)
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            conn = self._conn()
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"could not put {self.path} in WAL mode (got {mode!r}): "
                                 "WAL needs a local file system that supports shared memory")
            migrate(conn)
        except sqlite3.DatabaseError as exc:
            self.close()
            if (storage := storage_error(exc, self.path)) is not None:
                raise storage from exc
            raise StoreError(f"{self.path} is not a usable forgerl store ({exc}); "
                             "pass a run directory or a store.sqlite written by forgerl") from exc
        except BaseException:
            self.close()
            raise

    # -- connections -------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"the store {self.path} is closed; open a new TrajectoryStore")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _write(self) -> _WriteTransaction:
        return _WriteTransaction(self._conn(), self.path, self._busy_timeout_s)

    def close(self) -> None:
        """Close every connection this store opened (in any thread). Idempotent."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    def __enter__(self) -> TrajectoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs --------------------------------------------------------------------------------

    def add_run(self, config: Mapping[str, Any] | BaseModel | None = None, *, run_id: str | None = None,
                status: RunStatus = "running") -> str:
        """Record a run with its config (a JSON-serialisable mapping or a pydantic model)."""
        run_id = run_id if run_id is not None else new_id("run")
        _check_text("run_id", run_id)
        _check_run_status(status)
        config_json = _config_json(config)
        with self._write() as conn:
            try:
                conn.execute("INSERT INTO runs (id, created_at, config, status) VALUES (?, ?, ?, ?)",
                             (run_id, time.time(), config_json, status))
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"run {run_id!r} already exists; pick another run_id") from exc
        return run_id

    def set_run_status(self, run_id: str, status: RunStatus) -> None:
        _check_run_status(status)
        with self._write() as conn:
            if conn.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run_id)).rowcount == 0:
                raise _unknown_run(run_id)

    def get_run(self, run_id: str) -> RunRecord:
        row = self._conn().execute("SELECT id, created_at, config, status FROM runs WHERE id = ?",
                                   (run_id,)).fetchone()
        if row is None:
            raise _unknown_run(run_id)
        return RunRecord(row[0], row[1], json.loads(row[2]), row[3])

    def runs(self) -> list[RunRecord]:
        rows = self._conn().execute("SELECT id, created_at, config, status FROM runs ORDER BY created_at, id")
        return [RunRecord(r[0], r[1], json.loads(r[2]), r[3]) for r in rows]

    # -- trajectories ------------------------------------------------------------------------

    def add_trajectory(self, trajectory: Trajectory, run_id: str, *, step: int | None = None) -> None:
        """Store one trajectory; durable once this returns. An id already stored raises
        DuplicateTrajectoryError (append-only)."""
        self.add_trajectories([trajectory], run_id, step=step)

    def add_trajectories(self, trajectories: Sequence[Trajectory], run_id: str, *, step: int | None = None) -> None:
        """Store several trajectories in one transaction: all of them or (on any error) none."""
        if isinstance(trajectories, Trajectory):
            raise StoreError("add_trajectories takes a list of trajectories; use add_trajectory for one")
        if step is not None:
            _check_step(step)
        summaries = [_summarise(t) for t in trajectories]
        if not summaries:
            return
        placeholders = ", ".join("?" * (len(SUMMARY_COLUMNS) + 2))
        sql = (f"INSERT INTO trajectories ({', '.join(SUMMARY_COLUMNS)}, payload, payload_encoding) "
               f"VALUES ({placeholders})")
        with self._write() as conn:
            _require_run(conn, run_id)
            for traj, summary in zip(trajectories, summaries, strict=True):
                row = (summary.values[0], run_id, step, *summary.values[1:], summary.payload, summary.encoding)
                try:
                    conn.execute(sql, row)
                except sqlite3.IntegrityError as exc:
                    if "UNIQUE" in str(exc):
                        raise DuplicateTrajectoryError(
                            f"trajectory {traj.id!r} is already stored and the store is append-only: "
                            "give a new episode a fresh id (Trajectory() makes one)") from exc
                    raise

    def mark_consumed(self, ids: Iterable[str], step: int) -> None:
        """Record the training step that consumed these trajectories (the one allowed update).

        All or nothing: an unknown id, or one already consumed at a different step, raises and
        nothing changes. Marking again at the same step is a no-op, so a retried step is safe.
        """
        _check_step(step)
        if isinstance(ids, str):
            raise StoreError("mark_consumed takes a list of trajectory ids, got a single string")
        wanted = list(dict.fromkeys(_check_text("trajectory id", i) for i in ids))
        with self._write() as conn:
            found: dict[str, int | None] = {}
            superseded: list[str] = []
            for chunk in _chunks(wanted):
                marks = ", ".join("?" * len(chunk))
                for tid, tstep, sup in conn.execute(
                        f"SELECT id, step, superseded_at FROM trajectories WHERE id IN ({marks})", chunk):
                    found[tid] = tstep
                    if sup is not None:
                        superseded.append(tid)
            missing = [i for i in wanted if i not in found]
            if missing:
                raise UnknownRecordError(f"no stored trajectory with id {_preview(missing)}; nothing was marked")
            if superseded:
                raise StoreError(f"trajectories {_preview(superseded)} were superseded by a resume (their step is "
                                 "redone) and are never trained on; nothing was marked")
            clashes = [i for i in wanted if found[i] is not None and found[i] != step]
            if clashes:
                raise StoreError(f"trajectories {_preview(clashes)} were already consumed at another step "
                                 f"(e.g. {found[clashes[0]]}), not {step}; a step is recorded once")
            for chunk in _chunks([i for i in wanted if found[i] is None]):
                marks = ", ".join("?" * len(chunk))
                conn.execute(f"UPDATE trajectories SET step = ? WHERE id IN ({marks})", (step, *chunk))

    def get_trajectory(self, trajectory_id: str) -> Trajectory:
        row = self._conn().execute("SELECT payload, payload_encoding FROM trajectories WHERE id = ?",
                                   (trajectory_id,)).fetchone()
        if row is None:
            raise UnknownRecordError(f"no stored trajectory with id {trajectory_id!r}")
        return _load_trajectory(row[0], row[1])

    def __contains__(self, trajectory_id: object) -> bool:
        return self._conn().execute("SELECT 1 FROM trajectories WHERE id = ?", (trajectory_id,)).fetchone() is not None

    def count(self, **filters: Any) -> int:
        """How many trajectories match the `query` filters."""
        where, params = _where(**filters)
        return int(self._conn().execute(f"SELECT COUNT(*) FROM trajectories{where}", params).fetchone()[0])

    def query(self, run_id: str | None = None, step: int | None = None, family: str | None = None,
              status: TrajectoryStatus | str | None = None, min_reward: float | None = None,
              max_reward: float | None = None, limit: int | None = None, order: Order = "created",
              *, consumed: bool | None = None, superseded: bool | None = False) -> list[Trajectory]:
        """Trajectories matching every given filter (None = any). Rewards bound inclusively; a
        reward filter skips unscored trajectories. `consumed=False` gives those no step has used.
        Superseded trajectories (a resume redid their step) are left out unless `superseded` is
        True (only them) or None (all)."""
        return list(self.iter_trajectories(run_id=run_id, step=step, family=family, status=status,
                                           min_reward=min_reward, max_reward=max_reward, limit=limit,
                                           order=order, consumed=consumed, superseded=superseded))

    def query_rows(self, run_id: str | None = None, step: int | None = None, family: str | None = None,
                   status: TrajectoryStatus | str | None = None, min_reward: float | None = None,
                   max_reward: float | None = None, limit: int | None = None, order: Order = "created",
                   *, consumed: bool | None = None, superseded: bool | None = False) -> list[dict[str, Any]]:
        """Like `query`, but the indexed summary columns only (no payload is decoded)."""
        return list(self.iter_rows(run_id=run_id, step=step, family=family, status=status,
                                   min_reward=min_reward, max_reward=max_reward, limit=limit,
                                   order=order, consumed=consumed, superseded=superseded))

    def iter_trajectories(self, **filters: Any) -> Iterator[Trajectory]:
        """Stream matching trajectories without holding them all in memory (used by the exports)."""
        for row in self._select(("payload", "payload_encoding"), **filters):
            yield _load_trajectory(row[0], row[1])

    def iter_rows(self, **filters: Any) -> Iterator[dict[str, Any]]:
        for row in self._select(SUMMARY_COLUMNS, **filters):
            yield dict(zip(SUMMARY_COLUMNS, row, strict=True))

    def iter_export_rows(self, **filters: Any) -> Iterator[tuple[dict[str, Any], str]]:
        """(summary row, trajectory JSON) pairs: what the exports write, decoded once."""
        for row in self._select((*SUMMARY_COLUMNS, "payload", "payload_encoding"), **filters):
            summary = dict(zip(SUMMARY_COLUMNS, row[: len(SUMMARY_COLUMNS)], strict=True))
            yield summary, _current_schema_json(decode_payload(row[-2], row[-1]))

    def _select(self, columns: Sequence[str], *, limit: int | None = None, order: str = "created",
                **filters: Any) -> Iterator[tuple[Any, ...]]:
        if order not in _ORDER_SQL:
            raise StoreError(f"unknown order {order!r}; use one of {', '.join(_ORDER_SQL)}")
        where, params = _where(**filters)
        sql = f"SELECT {', '.join(columns)} FROM trajectories{where} ORDER BY {_ORDER_SQL[order]}"
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise StoreError(f"limit must be a non-negative integer, got {limit!r}")
            sql += " LIMIT ?"
            params.append(limit)
        yield from self._conn().execute(sql, params)

    # -- metrics -----------------------------------------------------------------------------

    def log_metrics(self, run_id: str, step: int, values: Mapping[str, float]) -> None:
        """Record the trainer's metrics for one step, in one transaction. NaN is kept (as NULL in
        the file, NaN when read back): a NaN loss is an observation worth keeping."""
        _check_step(step)
        if not isinstance(values, Mapping):
            raise StoreError(f"log_metrics takes a mapping of metric name -> number, got {type(values).__name__}")
        rows = []
        now = time.time()
        for name, value in values.items():
            _check_text("metric name", name)
            if not isinstance(value, numbers.Real):
                raise StoreError(f"metric {name!r} must be a real number, got {type(value).__name__} "
                                 "(call .item() on tensors)")
            value = float(value)
            rows.append((run_id, step, name, None if math.isnan(value) else value, now))
        with self._write() as conn:
            _require_run(conn, run_id)
            conn.executemany("INSERT INTO metrics (run_id, step, name, value, time) VALUES (?, ?, ?, ?, ?)", rows)

    def metrics(self, run_id: str, name: str | None = None, *,
                superseded: bool | None = False) -> list[tuple[int, str, float]]:
        """(step, name, value) in logging order, optionally for one metric name; the values a
        resume superseded are left out unless `superseded` is True (only them) or None (all)."""
        sql = "SELECT step, name, value FROM metrics WHERE run_id = ?" + _superseded_clause(superseded)
        params: list[Any] = [run_id]
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        rows = self._conn().execute(sql + " ORDER BY step, rowid", params)
        return [(s, n, math.nan if v is None else v) for s, n, v in rows]

    # -- checkpoints -------------------------------------------------------------------------

    def add_checkpoint(self, run_id: str, step: int, path: str | os.PathLike[str], *,
                       policy_version: int | None = None, metadata: Mapping[str, Any] | None = None) -> int:
        """Record that a checkpoint of `run_id` at `step` was written to `path`; returns its id.
        Call it after the checkpoint's files are complete, so a recorded checkpoint is loadable."""
        _check_step(step)
        if policy_version is not None:
            _check_step(policy_version, what="policy_version")
        metadata_json = _json_text("checkpoint metadata", dict(metadata or {}))
        with self._write() as conn:
            _require_run(conn, run_id)
            cur = conn.execute(
                "INSERT INTO checkpoints (run_id, step, path, policy_version, created_at, metadata) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, step, os.fspath(path), policy_version, time.time(), metadata_json))
            return int(cur.lastrowid)

    def checkpoints(self, run_id: str, *, superseded: bool | None = False) -> list[CheckpointRecord]:
        """The run's checkpoints by step; those a resume superseded (it went back to an earlier
        one) are left out unless `superseded` is True (only them) or None (all)."""
        rows = self._conn().execute(f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE run_id = ?"
                                    f"{_superseded_clause(superseded)} ORDER BY step, id", (run_id,))
        return [_checkpoint(r) for r in rows]

    def latest_checkpoint(self, run_id: str) -> CheckpointRecord | None:
        """The checkpoint with the highest step (the latest recorded, on ties), not superseded; None if none."""
        row = self._conn().execute(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE run_id = ? AND superseded_at IS NULL "
            "ORDER BY step DESC, id DESC LIMIT 1", (run_id,)).fetchone()
        return None if row is None else _checkpoint(row)

    # -- exact resume ------------------------------------------------------------------------

    def supersede_from(self, run_id: str, step: int, *, unconsumed: bool) -> dict[str, int]:
        """A resume that redoes the steps from `step` on marks what the run recorded for them as
        superseded, in one transaction: trajectories consumed at those steps, metrics logged at
        them, checkpoints saved at them, and (with `unconsumed`) trajectories collected but never
        trained on. They stay in the file; queries, exports and reports then see each step once.
        Returns how many of each were marked."""
        _check_step(step)
        now = time.time()
        trajectory_filter = "(step >= ? OR step IS NULL)" if unconsumed else "step >= ?"
        with self._write() as conn:
            _require_run(conn, run_id)
            counts = {
                "trajectories": conn.execute(
                    f"UPDATE trajectories SET superseded_at = ? WHERE run_id = ? AND superseded_at IS NULL "
                    f"AND {trajectory_filter}", (now, run_id, step)).rowcount,
                "metrics": conn.execute("UPDATE metrics SET superseded_at = ? WHERE run_id = ? AND superseded_at IS NULL "
                                        "AND step >= ?", (now, run_id, step)).rowcount,
                "checkpoints": conn.execute("UPDATE checkpoints SET superseded_at = ? WHERE run_id = ? "
                                            "AND superseded_at IS NULL AND step >= ?", (now, run_id, step)).rowcount,
            }
        return counts

    def supersede_trajectories(self, ids: Iterable[str]) -> int:
        """Mark untrained trajectories superseded (a restart regenerates their rollout: e.g. they
        were sampled by weights a resume threw away). Trained ones are refused; returns how many
        were newly marked."""
        if isinstance(ids, str):
            raise StoreError("supersede_trajectories takes a list of trajectory ids, got a single string")
        wanted = list(dict.fromkeys(_check_text("trajectory id", i) for i in ids))
        now, marked = time.time(), 0
        with self._write() as conn:
            for chunk in _chunks(wanted):
                marks = ", ".join("?" * len(chunk))
                trained = [r[0] for r in conn.execute(
                    f"SELECT id FROM trajectories WHERE id IN ({marks}) AND step IS NOT NULL", chunk)]
                if trained:
                    raise StoreError(f"trajectories {_preview(trained)} were trained on; supersede their step with "
                                     "supersede_from instead")
                marked += conn.execute(f"UPDATE trajectories SET superseded_at = ? WHERE id IN ({marks}) "
                                       "AND superseded_at IS NULL", (now, *chunk)).rowcount
        return marked

    # -- labels (expert feedback; the review UI fills these) ---------------------------------

    def add_label(self, trajectory_id: str, expert: str, payload: Mapping[str, Any], *,
                  rubric_version: str, kind: str = "other", other_trajectory_id: str | None = None,
                  supersedes: int | None = None) -> int:
        """Append an expert's label for a trajectory; labels are never edited, only superseded.

        `kind` is "rubric", "preference" (then `other_trajectory_id` is the pair's second
        trajectory), "comment" or "other". `supersedes` names the same expert's earlier label that
        this one replaces; superseding another expert's label is refused (and the file's trigger
        refuses it too), so no expert can change someone else's judgement.
        """
        _check_text("expert", expert)
        _check_text("rubric_version", rubric_version)
        if kind not in LABEL_KINDS:
            raise StoreError(f"unknown label kind {kind!r}; use one of {', '.join(LABEL_KINDS)}")
        if (kind == "preference") != (other_trajectory_id is not None):
            raise StoreError("a preference label needs other_trajectory_id (the pair's second trajectory), "
                             "and only a preference label takes one")
        if other_trajectory_id is not None and other_trajectory_id == trajectory_id:
            raise StoreError(f"a preference compares two different trajectories, got {trajectory_id!r} twice")
        payload_json = _json_text("label payload", dict(payload))
        with self._write() as conn:
            for tid in (trajectory_id, other_trajectory_id):
                if tid is None:
                    continue
                if conn.execute("SELECT 1 FROM trajectories WHERE id = ?", (tid,)).fetchone() is None:
                    raise UnknownRecordError(f"no stored trajectory with id {tid!r} to label")
            if supersedes is not None:
                row = conn.execute("SELECT expert FROM labels WHERE id = ?", (supersedes,)).fetchone()
                if row is None:
                    raise UnknownRecordError(f"no label with id {supersedes!r} to supersede")
                if row[0] != expert:
                    raise StoreError(f"label {supersedes} belongs to expert {row[0]!r}; {expert!r} can only "
                                     "supersede their own labels (add a new label instead)")
                if conn.execute("SELECT 1 FROM labels WHERE supersedes = ?", (supersedes,)).fetchone() is not None:
                    raise StoreError(f"label {supersedes} was already superseded; supersede its latest "
                                     "replacement instead")
            cur = conn.execute(
                "INSERT INTO labels (trajectory_id, expert, rubric_version, payload, created_at, kind, "
                "other_trajectory_id, supersedes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (trajectory_id, expert, rubric_version, payload_json, time.time(), kind, other_trajectory_id,
                 supersedes))
            return int(cur.lastrowid)

    def labels(self, trajectory_id: str | None = None, *, expert: str | None = None, kind: str | None = None,
               current_only: bool = False) -> list[LabelRecord]:
        """Labels in the order they were added. `trajectory_id` matches either side of a preference.
        `current_only` drops labels a later label of the same expert superseded."""
        clauses: list[str] = []
        params: list[Any] = []
        if trajectory_id is not None:
            clauses.append("(l.trajectory_id = ? OR l.other_trajectory_id = ?)")
            params += [trajectory_id, trajectory_id]
        if expert is not None:
            clauses.append("l.expert = ?")
            params.append(expert)
        if kind is not None:
            if kind not in LABEL_KINDS:
                raise StoreError(f"unknown label kind {kind!r}; use one of {', '.join(LABEL_KINDS)}")
            clauses.append("l.kind = ?")
            params.append(kind)
        if current_only:
            clauses.append("NOT EXISTS (SELECT 1 FROM labels s WHERE s.supersedes = l.id)")
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._conn().execute(f"SELECT {_LABEL_COLUMNS} FROM labels l{where} ORDER BY l.id", params)
        return [_label(r) for r in rows]

    def get_label(self, label_id: int) -> LabelRecord:
        row = self._conn().execute(f"SELECT {_LABEL_COLUMNS} FROM labels l WHERE l.id = ?", (label_id,)).fetchone()
        if row is None:
            raise UnknownRecordError(f"no label with id {label_id!r}")
        return _label(row)

    # -- expert accounts (the review app's sign-in) --------------------------------------------

    def add_expert(self, name: str, password_hash: str) -> None:
        """Create an expert account. The store keeps the hash only; hashing is the caller's job
        (forgerl.review.auth). An existing name raises."""
        _check_text("expert name", name)
        _check_text("password hash", password_hash)
        with self._write() as conn:
            try:
                conn.execute("INSERT INTO experts (name, password_hash, created_at) VALUES (?, ?, ?)",
                             (name, password_hash, time.time()))
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"expert {name!r} already exists; pick another name") from exc

    def set_expert_password(self, name: str, password_hash: str) -> None:
        _check_text("password hash", password_hash)
        with self._write() as conn:
            if conn.execute("UPDATE experts SET password_hash = ? WHERE name = ?", (password_hash, name)).rowcount == 0:
                raise UnknownRecordError(f"no expert named {name!r}; create one with add_expert")

    def get_expert(self, name: str) -> ExpertRecord | None:
        row = self._conn().execute("SELECT name, password_hash, created_at FROM experts WHERE name = ?",
                                   (name,)).fetchone()
        return None if row is None else ExpertRecord(*row)

    def experts(self) -> list[str]:
        return [r[0] for r in self._conn().execute("SELECT name FROM experts ORDER BY name")]

    # -- export ------------------------------------------------------------------------------

    def export_jsonl(self, path: str | os.PathLike[str], **filters: Any) -> int:
        """Write matching trajectories, one JSON object per line; returns how many."""
        from forgerl.store.export import (
            write_jsonl,  # cycle: forgerl.store.export imports forgerl.store.sqlite (via forgerl.store)
        )

        return write_jsonl(self, path, **filters)

    def export_parquet(self, path: str | os.PathLike[str], **filters: Any) -> int:
        """Write matching trajectories to Parquet (summary columns + the trajectory JSON); needs
        pyarrow. Returns how many."""
        from forgerl.store.export import (
            write_parquet,  # cycle: forgerl.store.export imports forgerl.store.sqlite (via forgerl.store)
        )

        return write_parquet(self, path, **filters)


class _WriteTransaction:
    """`BEGIN IMMEDIATE` ... `COMMIT` (or `ROLLBACK` on any error).

    IMMEDIATE takes the write lock up front, so a transaction that read something never fails later
    with SQLITE_BUSY on its first write; the busy timeout makes concurrent writers queue instead.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, busy_timeout_s: float) -> None:
        self.conn, self.path, self.busy_timeout_s = conn, path, busy_timeout_s

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if (storage := storage_error(exc, self.path)) is not None:
                raise storage from exc
            raise StoreError(f"could not take the write lock on {self.path} within {self.busy_timeout_s}s ({exc}); "
                             "another process holds it: retry, or raise busy_timeout_s") from exc
        return self.conn

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        """Commit, or roll back on any error. A full disk or an I/O error, in the body or at COMMIT,
        becomes a StorageError after the rollback: the write was not acknowledged and left nothing."""
        if exc is None:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as commit_exc:
                self._rollback()
                if (storage := storage_error(commit_exc, self.path)) is not None:
                    raise storage from commit_exc
                raise
            except BaseException:
                self._rollback()
                raise
        self._rollback()
        if isinstance(exc, sqlite3.OperationalError) and (storage := storage_error(exc, self.path)) is not None:
            raise storage from exc

    def _rollback(self) -> None:
        """Best effort: SQLite may already have rolled back (it does on some SQLITE_FULL / IOERR), and a
        failing ROLLBACK must not hide the error that caused it."""
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")


_SQLITE_IOERR, _SQLITE_FULL = 10, 13  # primary result codes (the low byte of an extended code)


def storage_error(exc: sqlite3.Error, path: Path) -> StorageError | None:
    """The store's error for a failure of the disk under `path` (SQLITE_FULL, SQLITE_IOERR*), or None
    for any other SQLite error."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = code & 0xFF
    if primary == _SQLITE_FULL:
        return StorageFullError(f"the disk holding {path} is full ({exc}); nothing of this write was kept and "
                                "earlier writes are safe: free space on that file system (or raise its quota), "
                                "then retry")
    if primary == _SQLITE_IOERR:
        name = getattr(exc, "sqlite_errorname", "SQLITE_IOERR")
        return StorageError(f"I/O error writing {path} ({exc}, {name}); nothing of this write was kept: check "
                            "the disk (free space, permissions, `dmesg`), then retry")
    return None


_LABEL_COLUMNS = ("l.id, l.trajectory_id, l.expert, l.rubric_version, l.payload, l.created_at, l.kind, "
                  "l.other_trajectory_id, l.supersedes")


def _label(row: tuple[Any, ...]) -> LabelRecord:
    return LabelRecord(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6], row[7], row[8])


_CHECKPOINT_COLUMNS = "id, run_id, step, path, policy_version, created_at, metadata"


def _checkpoint(row: tuple[Any, ...]) -> CheckpointRecord:
    return CheckpointRecord(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]))


def _where(run_id: str | None = None, step: int | None = None, family: str | None = None,
           status: TrajectoryStatus | str | None = None, min_reward: float | None = None,
           max_reward: float | None = None, consumed: bool | None = None,
           superseded: bool | None = False) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if run_id is not None:
        clauses.append("run_id = ?")
        params.append(run_id)
    if step is not None:
        _check_step(step)
        clauses.append("step = ?")
        params.append(step)
    if family is not None:
        clauses.append("family = ?")
        params.append(family)
    if status is not None:
        clauses.append("status = ?")
        params.append(_status_value(status))
    for bound, op, name in ((min_reward, ">=", "min_reward"), (max_reward, "<=", "max_reward")):
        if bound is not None:
            if isinstance(bound, bool) or not isinstance(bound, numbers.Real) or math.isnan(bound):
                raise StoreError(f"{name} must be a number, got {bound!r}")
            clauses.append(f"reward {op} ?")
            params.append(float(bound))
    if consumed is not None:
        clauses.append("step IS NOT NULL" if consumed else "step IS NULL")
    if superseded is not None:
        clauses.append("superseded_at IS NOT NULL" if superseded else "superseded_at IS NULL")
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _superseded_clause(superseded: bool | None) -> str:
    """The SQL (after a WHERE) that keeps live rows (False), superseded ones (True) or all (None)."""
    if superseded is None:
        return ""
    return " AND superseded_at IS NOT NULL" if superseded else " AND superseded_at IS NULL"


def _status_value(status: TrajectoryStatus | str) -> str:
    try:
        return TrajectoryStatus(status).value
    except ValueError:
        options = ", ".join(s.value for s in TrajectoryStatus)
        raise StoreError(f"unknown trajectory status {status!r}; use one of {options}") from None


def _summarise(traj: Trajectory) -> _Summary:
    if not isinstance(traj, Trajectory):
        raise StoreError(f"the store keeps forgerl.types.Trajectory objects, got {type(traj).__name__}")
    _check_finite(traj)
    _check_no_promoted_metadata(traj)
    family, difficulty = traj.family, traj.difficulty
    if family is not None and not isinstance(family, str):  # assignment is not validated by the model
        raise StoreError(f"trajectory {traj.id!r}: family must be a string, got {family!r}")
    if difficulty is not None:
        if isinstance(difficulty, bool) or not isinstance(difficulty, numbers.Real) or not math.isfinite(difficulty):
            raise StoreError(f"trajectory {traj.id!r}: difficulty must be a finite number, got {difficulty!r}")
        difficulty = float(difficulty)
    try:
        json_text = traj.model_dump_json()
    except Exception as exc:  # pydantic raises its own serialisation error for non-JSON metadata
        raise StoreError(f"trajectory {traj.id!r} cannot be serialised to JSON ({exc}); "
                         "keep metadata / perturbation values JSON-compatible") from exc
    payload, encoding = encode_payload(json_text)
    policy_version = min((c.policy_version for c in traj.calls), default=None)
    values = (traj.id, policy_version, traj.task_id, family, difficulty, traj.group_id, traj.agent_id,
              traj.status.value, traj.reward, len(traj.calls), traj.num_completion_tokens, traj.created_at)
    return _Summary(values, payload, encoding)


def _check_no_promoted_metadata(traj: Trajectory) -> None:
    """Schema 2 moved the structural metadata keys to typed fields. A writer that still puts one
    into `metadata` (after construction, where the model's own upgrade does not run) would store a
    value that filters, metrics and the review app never see: refuse it where the writer is known."""
    stale = sorted(k for k in PROMOTED_METADATA_KEYS if k in traj.metadata)
    if stale:
        fields = ", ".join(f"trajectory.{PROMOTED_METADATA_KEYS[k]}" for k in stale)
        raise StoreError(f"trajectory {traj.id!r}: metadata keys {stale} are typed fields since schema "
                         f"{SCHEMA_VERSION}; set {fields} instead (with a value of that field's type)")


def _check_finite(traj: Trajectory) -> None:
    """JSON has no NaN/inf: pydantic would write them as null and the trajectory would not load
    back the same. Refuse them here, where the caller can still see which field is wrong."""
    if traj.reward is not None and not math.isfinite(traj.reward):
        raise StoreError(f"trajectory {traj.id!r}: reward is {traj.reward}; score it with a finite number "
                         "(or None) before storing")
    for key, value in traj.reward_breakdown.items():
        if not math.isfinite(value):
            raise StoreError(f"trajectory {traj.id!r}: reward_breakdown[{key!r}] is {value}; must be finite")
    for index, call in enumerate(traj.calls):
        if not all(map(math.isfinite, call.completion_logprobs)):
            raise StoreError(f"trajectory {traj.id!r}: call {index} has a non-finite completion logprob; "
                             "the engine must return finite logprobs for sampled tokens")


_CURRENT_SCHEMA_TAIL = f'"schema_version":{SCHEMA_VERSION}}}'


def _current_schema_json(json_text: str) -> str:
    """The trajectory JSON in the current schema: payloads are append-only, so one stored by an
    older forgerl is moved forward through the model on the way out (exports then hold a single
    shape). `schema_version` is the model's last field, so a current payload ends with it."""
    if json_text.endswith(_CURRENT_SCHEMA_TAIL):
        return json_text
    return _parse_trajectory(json_text).model_dump_json()


def _load_trajectory(payload: bytes, encoding: str) -> Trajectory:
    return _parse_trajectory(decode_payload(payload, encoding))


def _parse_trajectory(json_text: str) -> Trajectory:
    try:
        return Trajectory.model_validate_json(json_text)
    except ValidationError as exc:
        raise StoreError(f"a stored trajectory no longer validates against forgerl.types.Trajectory ({exc}); "
                         "it was written by an incompatible forgerl version") from exc


def _require_run(conn: sqlite3.Connection, run_id: str) -> None:
    if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
        raise _unknown_run(run_id)


def _unknown_run(run_id: str) -> UnknownRecordError:
    return UnknownRecordError(f"no run with id {run_id!r} in this store; create it first with add_run()")


def _check_run_status(status: str) -> None:
    if status not in RUN_STATUSES:
        raise StoreError(f"unknown run status {status!r}; use one of {', '.join(RUN_STATUSES)}")


def _check_step(step: int, *, what: str = "step") -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise StoreError(f"{what} must be a non-negative integer, got {step!r}")
    return step


def _check_text(what: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise StoreError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _config_json(config: Mapping[str, Any] | BaseModel | None) -> str:
    if config is None:
        return "{}"
    if isinstance(config, BaseModel):
        return config.model_dump_json()
    if not isinstance(config, Mapping):
        raise StoreError(f"a run config must be a mapping or a pydantic model, got {type(config).__name__}")
    return _json_text("run config", dict(config))


def _json_text(what: str, value: dict[str, Any]) -> str:
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"the {what} must be JSON-serialisable with finite numbers ({exc})") from exc


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _ID_CHUNK):
        yield items[start:start + _ID_CHUNK]


def _preview(ids: list[str], n: int = 3) -> str:
    shown = ", ".join(repr(i) for i in ids[:n])
    return shown + (f" and {len(ids) - n} more" if len(ids) > n else "")
