"""The store on a full disk or a failing one: its own error (naming the file and what to do), no
acknowledged write lost, no failed write half-kept, and a store that works again once space is freed.

"Full" is made real with SQLite's `PRAGMA max_page_count` (a per-connection cap on the file's pages):
SQLite then fails the write with SQLITE_FULL exactly as it does when the file system returns ENOSPC.
"""

from __future__ import annotations

import sqlite3

import pytest

from forgerl.store import StoreError, TrajectoryStore
from forgerl.store.errors import StorageError, StorageFullError
from forgerl.store.sqlite import _WriteTransaction

from .conftest import build_trajectory


def _fill(store: TrajectoryStore, extra_pages: int = 3) -> None:
    """Cap the file at its current size plus a few pages: the next writes run out of room."""
    conn = store._conn()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + extra_pages}")


def _free_space(store: TrajectoryStore) -> None:
    store._conn().execute("PRAGMA max_page_count = 1073741823")


def _add_until_full(store: TrajectoryStore, run_id: str) -> tuple[list[str], StoreError]:
    acknowledged: list[str] = []
    for i in range(1000):
        traj = build_trajectory(i, n_calls=4, tokens_per_call=256)
        try:
            store.add_trajectory(traj, run_id)
        except StoreError as exc:
            return acknowledged, exc
        acknowledged.append(traj.id)
    raise AssertionError("the capped store never filled up")


def test_a_full_disk_raises_the_stores_error_and_keeps_every_acknowledged_write(tmp_path):
    store = TrajectoryStore(tmp_path / "run")
    store.add_run({}, run_id="r")
    _fill(store)
    acknowledged, error = _add_until_full(store, "r")

    assert isinstance(error, StorageFullError) and isinstance(error, StorageError)
    assert str(store.path) in str(error) and "free space" in str(error)
    assert isinstance(error.__cause__, sqlite3.OperationalError)  # the original stays attached for debugging
    assert acknowledged  # the cap left room for some
    assert [t.id for t in store.query(order="stored")] == acknowledged  # the failed one is absent, not half-kept

    _free_space(store)
    store.add_trajectory(build_trajectory(5000), "r")  # usable again, same connection
    store.close()
    with TrajectoryStore(tmp_path / "run") as again:
        assert [t.id for t in again.query(order="stored")] == [*acknowledged, "traj_005000"]
        assert again._conn().execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_batch_that_does_not_fit_is_stored_not_at_all(tmp_path):
    with TrajectoryStore(tmp_path / "run") as store:
        store.add_run({}, run_id="r")
        store.add_trajectory(build_trajectory(0), "r")
        _fill(store)
        batch = [build_trajectory(i, n_calls=4, tokens_per_call=256) for i in range(1, 60)]
        with pytest.raises(StorageFullError, match="nothing of this write was kept"):
            store.add_trajectories(batch, "r")
        assert store.count() == 1
        _free_space(store)
        store.add_trajectories(batch, "r")
        assert store.count() == 60


def test_labels_metrics_and_runs_on_a_full_disk_raise_the_same_error(tmp_path):
    with TrajectoryStore(tmp_path / "run") as store:
        store.add_run({}, run_id="r")
        store.add_trajectory(build_trajectory(0), "r")
        _fill(store, extra_pages=0)
        big = {"note": "x" * 50_000}
        with pytest.raises(StorageFullError):
            store.add_label("traj_000000", "alice", big, rubric_version="v1")
        with pytest.raises(StorageFullError):
            store.log_metrics("r", 0, {f"m{i}": float(i) for i in range(5000)})
        with pytest.raises(StorageFullError):
            store.add_run({"blob": "y" * 50_000}, run_id="r2")
        assert store.labels() == [] and store.metrics("r") == [] and [r.id for r in store.runs()] == ["r"]


class _FailingConnection:
    """Stands in for a connection whose file system fails (EIO) at a given statement."""

    def __init__(self, fail_on: str, code: int, name: str, message: str) -> None:
        self.fail_on, self.code, self.name, self.message = fail_on, code, name, message
        self.in_transaction = False
        self.statements: list[str] = []

    def execute(self, sql: str, *args: object) -> None:
        self.statements.append(sql)
        if sql == self.fail_on:
            exc = sqlite3.OperationalError(self.message)
            exc.sqlite_errorcode, exc.sqlite_errorname = self.code, self.name
            raise exc
        self.in_transaction = sql == "BEGIN IMMEDIATE" or (self.in_transaction and sql not in ("COMMIT", "ROLLBACK"))


@pytest.mark.parametrize("fail_on", ["BEGIN IMMEDIATE", "COMMIT"])
def test_an_io_error_is_the_stores_error_naming_the_file(tmp_path, fail_on):
    conn = _FailingConnection(fail_on, 10 | (3 << 8), "SQLITE_IOERR_WRITE", "disk I/O error")
    path = tmp_path / "store.sqlite"
    with pytest.raises(StorageError, match=rf"I/O error writing {path}.*nothing of this write was kept") as info:
        with _WriteTransaction(conn, path, 1.0):
            pass
    assert not isinstance(info.value, StorageFullError)
    assert "write lock" not in str(info.value)  # not mistaken for a busy lock
    if fail_on == "COMMIT":
        assert conn.statements[-1] == "ROLLBACK"


def test_a_busy_lock_is_still_reported_as_a_lock(tmp_path):
    conn = _FailingConnection("BEGIN IMMEDIATE", 5, "SQLITE_BUSY", "database is locked")
    with pytest.raises(StoreError, match="could not take the write lock") as info:
        with _WriteTransaction(conn, tmp_path / "store.sqlite", 1.0):
            pass
    assert not isinstance(info.value, StorageError)
