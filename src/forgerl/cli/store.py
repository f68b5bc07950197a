"""`forgerl store ...` commands (mounted by cli/main.py): they parse options and print; the work is
forgerl/store/run_dir.py's `export_store` and `summarize_store`."""

from __future__ import annotations

from pathlib import Path

import typer

from forgerl.cli.errors import add_hint

STORE_HINT = "pass a run directory made by `forgerl train` (it holds store.sqlite) or the .sqlite file itself"

store_app = typer.Typer(help="Inspect and export a run's trajectory store (run_dir/store.sqlite).",
                        no_args_is_help=True)


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
    from forgerl.store.errors import StoreError  # heavy: forgerl.store.errors, kept out of forgerl --help
    from forgerl.store.run_dir import export_store  # heavy: forgerl.store, kept out of forgerl --help

    try:
        target, count = export_store(run_dir, fmt, out, run_id=run_id, family=family, status=status,  # type: ignore[arg-type]
                                     min_reward=min_reward, max_reward=max_reward)
    except StoreError as exc:  # cli/errors.py prints it: error + hint, exit 2
        raise add_hint(exc, f"{STORE_HINT}, and --format jsonl or parquet") from None
    typer.echo(f"wrote {count} trajectories to {target}")


@store_app.command("summary")
def summary_command(
    run_dir: Path = typer.Argument(..., help="Run directory holding store.sqlite (or the .sqlite file)."),
) -> None:
    """Print each run's status, trajectory counts, mean reward and latest checkpoint."""
    from forgerl.store.errors import StoreError  # heavy: forgerl.store.errors, kept out of forgerl --help
    from forgerl.store.run_dir import summarize_store  # heavy: forgerl.store, kept out of forgerl --help

    try:
        rows = summarize_store(run_dir)
    except StoreError as exc:  # cli/errors.py prints it: error + hint, exit 2
        raise add_hint(exc, STORE_HINT) from None
    for row in rows:
        mean = "-" if row["mean_reward"] is None else f"{row['mean_reward']:.3f}"
        typer.echo(f"{row['run']}  {row['status']}  trajectories={row['trajectories']} "
                   f"consumed={row['consumed']}  superseded={row['superseded']}  mean_reward={mean}  "
                   f"latest_checkpoint={row['latest_checkpoint_step']}")
