"""Whole-run-directory operations behind `forgerl store export` and `forgerl store summary`
(cli/store.py): plain Python, so scripts and tests call them without a command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from forgerl.store.errors import StoreError
from forgerl.store.sqlite import STORE_FILENAME, TrajectoryStore, resolve_store_path

ExportFormat = Literal["jsonl", "parquet"]


def export_store(run_dir: str | Path, fmt: ExportFormat, out: str | Path | None = None,
                 **filters: Any) -> tuple[Path, int]:
    """Export a run directory's trajectories; returns (file written, trajectories written).
    Without `out` the file is `run_dir/trajectories.<fmt>`."""

    if fmt not in ("jsonl", "parquet"):
        raise StoreError(f"unknown export format {fmt!r}; use jsonl or parquet")
    store_path = resolve_store_path(run_dir) if Path(run_dir).exists() else None
    if store_path is None or not store_path.is_file():
        raise StoreError(f"no store at {run_dir}: expected a run directory containing {STORE_FILENAME}")
    target = Path(out) if out is not None else store_path.parent / f"trajectories.{fmt}"
    with TrajectoryStore(store_path) as store:
        count = store.export_jsonl(target, **filters) if fmt == "jsonl" else store.export_parquet(target, **filters)
    return target, count


def summarize_store(run_dir: str | Path) -> list[dict[str, Any]]:
    """Per run: id, status, trajectory count, consumed count, mean reward, latest checkpoint step,
    and how many trajectories a resume superseded (kept in the file, left out of the counts)."""

    store_path = resolve_store_path(run_dir) if Path(run_dir).exists() else None
    if store_path is None or not store_path.is_file():
        raise StoreError(f"no store at {run_dir}: expected a run directory containing {STORE_FILENAME}")
    out = []
    with TrajectoryStore(store_path) as store:
        for run in store.runs():
            rewards = [r["reward"] for r in store.query_rows(run_id=run.id) if r["reward"] is not None]
            latest = store.latest_checkpoint(run.id)
            out.append({"run": run.id, "status": run.status, "trajectories": store.count(run_id=run.id),
                        "consumed": store.count(run_id=run.id, consumed=True),
                        "superseded": store.count(run_id=run.id, superseded=True),
                        "mean_reward": sum(rewards) / len(rewards) if rewards else None,
                        "latest_checkpoint_step": None if latest is None else latest.step})
    return out
