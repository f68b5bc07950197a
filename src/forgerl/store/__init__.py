"""Durable, append-only storage of runs, trajectories, metrics, checkpoint metadata and labels.

`TrajectoryStore(run_dir)` keeps everything of a run in `run_dir/store.sqlite` (SQLite, WAL,
fsynced commits: a write that returned survives `kill -9` and power loss). See `sqlite.py` for the
why, `migrations.py` for the schema, `export.py` for JSONL/Parquet.
"""

from forgerl.store.aio import AsyncTrajectoryStore
from forgerl.store.errors import (
    DuplicateTrajectoryError,
    SchemaVersionError,
    StorageError,
    StorageFullError,
    StoreError,
    UnknownRecordError,
)
from forgerl.store.migrations import LATEST_VERSION
from forgerl.store.sqlite import (
    LABEL_KINDS,
    STORE_FILENAME,
    SUMMARY_COLUMNS,
    CheckpointRecord,
    ExpertRecord,
    LabelRecord,
    RunRecord,
    TrajectoryStore,
    resolve_store_path,
)

__all__ = [
    "LATEST_VERSION",
    "STORE_FILENAME",
    "SUMMARY_COLUMNS",
    "AsyncTrajectoryStore",
    "CheckpointRecord",
    "DuplicateTrajectoryError",
    "ExpertRecord",
    "LABEL_KINDS",
    "LabelRecord",
    "RunRecord",
    "SchemaVersionError",
    "StorageError",
    "StorageFullError",
    "StoreError",
    "TrajectoryStore",
    "UnknownRecordError",
    "resolve_store_path",
]
