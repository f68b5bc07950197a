"""`forgerl store ...` commands, ready for the lead to wire into the main CLI with
`app.add_typer(store_app, name="store")`. The functions below the commands are plain Python so
other code (and tests) can call them without typer."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import typer

store_app = typer.Typer(help="Inspect and export a run's trajectory store (run_dir/store.sqlite).",
                        no_args_is_help=True)

ExportFormat = Literal["jsonl", "parquet"]


def export_store(run_dir: str | Path, fmt: ExportFormat, out: str | Path | None = None,
                 **filters: Any) -> tuple[Path, int]:
    """Export a run directory's trajectories; returns (file written, trajectories written).
    Without `out` the file is `run_dir/trajectories.<fmt>`."""
    from forgerl.store.errors import StoreError
    from forgerl.store.sqlite import STORE_FILENAME, TrajectoryStore, resolve_store_path

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
    from forgerl.store.errors import StoreError
    from forgerl.store.sqlite import STORE_FILENAME, TrajectoryStore, resolve_store_path

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


@store_app.command("export")
def export_command(
    run_dir: Path = typer.Argument(..., help="Run directory holding store.sqlite (or the .sqlite file)."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl (full trajectories) or parquet (needs pyarrow)."),
    out: Path | None = typer.Option(None, help="Output file; default run_dir/trajectories.<format>."),
    run_id: str | None = typer.Option(None, help="Only this run."),
    family: str | None = typer.Option(None, help="Only this task family."),
    status: str | None = typer.Option(None, help="Only this status: completed, truncated or failed."),
    min_reward: float | None = typer.Option(None, help="Only rewards >= this."),
    max_reward: float | None = typer.Option(None, help="Only rewards <= this."),
) -> None:
    """Export trajectories to JSONL or Parquet."""
    from forgerl.store.errors import StoreError

    try:
        target, count = export_store(run_dir, fmt, out, run_id=run_id, family=family, status=status,  # type: ignore[arg-type]
                                     min_reward=min_reward, max_reward=max_reward)
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"wrote {count} trajectories to {target}")


@store_app.command("summary")
def summary_command(
    run_dir: Path = typer.Argument(..., help="Run directory holding store.sqlite (or the .sqlite file)."),
) -> None:
    """Print each run's status, trajectory counts, mean reward and latest checkpoint."""
    from forgerl.store.errors import StoreError

    try:
        rows = summarize_store(run_dir)
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for row in rows:
        mean = "-" if row["mean_reward"] is None else f"{row['mean_reward']:.3f}"
        typer.echo(f"{row['run']}  {row['status']}  trajectories={row['trajectories']} "
                   f"consumed={row['consumed']}  superseded={row['superseded']}  mean_reward={mean}  "
                   f"latest_checkpoint={row['latest_checkpoint_step']}")
