"""Exports of stored trajectories to files other tools read: JSON Lines and Parquet.

JSONL carries the full trajectory per line (what `Trajectory.model_validate_json` reads back).
Parquet carries the indexed summary columns as typed columns, for analysis in pandas/DuckDB/Spark,
plus the full trajectory JSON in a `trajectory` string column. Both stream from the database in
batches, and write to a temporary file renamed into place at the end, so a crashed export never
leaves a truncated file behind under the requested name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgerl.store.errors import StoreError

if TYPE_CHECKING:
    from forgerl.store.sqlite import TrajectoryStore

PARQUET_BATCH_ROWS = 256


@contextmanager
def _atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    target = Path(path)
    if target.is_dir():
        raise StoreError(f"export target {target} is a directory; give a file path")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_jsonl(store: TrajectoryStore, path: str | os.PathLike[str], **filters: Any) -> int:
    """One trajectory JSON per line, in the order of `filters["order"]` (default: created)."""
    count = 0
    with _atomic_output(path) as tmp, tmp.open("w", encoding="utf-8") as out:
        for _, trajectory_json in store.iter_export_rows(**filters):
            out.write(trajectory_json)
            out.write("\n")
            count += 1
    return count


def _import_pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise StoreError("Parquet export needs pyarrow, which is not installed: "
                         "pip install pyarrow==26.0.1 (or export to JSONL instead)") from exc
    return pyarrow


def parquet_schema(pa: Any) -> Any:
    return pa.schema([
        ("id", pa.string()), ("run_id", pa.string()), ("step", pa.int64()), ("policy_version", pa.int64()),
        ("task_id", pa.string()), ("family", pa.string()), ("difficulty", pa.float64()),
        ("group_id", pa.string()), ("agent_id", pa.string()), ("status", pa.string()),
        ("reward", pa.float64()), ("n_calls", pa.int64()), ("n_tokens", pa.int64()),
        ("created_at", pa.float64()), ("trajectory", pa.string()),
    ])


def write_parquet(store: TrajectoryStore, path: str | os.PathLike[str], **filters: Any) -> int:
    """Summary columns + the trajectory JSON, written in row groups of PARQUET_BATCH_ROWS."""
    pa = _import_pyarrow()
    schema = parquet_schema(pa)
    count = 0
    with _atomic_output(path) as tmp, pa.parquet.ParquetWriter(tmp, schema) as writer:
        batch: list[dict[str, Any]] = []
        for summary, trajectory_json in store.iter_export_rows(**filters):
            batch.append({**summary, "trajectory": trajectory_json})
            if len(batch) >= PARQUET_BATCH_ROWS:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                count += len(batch)
                batch = []
        if batch or count == 0:  # an empty export still gets a valid file with the schema
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
    return count
