"""What the experiment-table scripts share (transfer_experiment.py, context_rot_experiment.py): reading
a run's metrics back from its store, and the command line that prints a script's tables."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forgerl.store import TrajectoryStore

Tables = Callable[[Path, list[int]], tuple[str, dict[str, Any]]]


def last_run_metrics(run_dir: Path) -> list[tuple[int, str, float]] | None:
    """(step, name, value) of every metric the last run recorded in `run_dir`; None when there is none."""
    if not (run_dir / "store.sqlite").exists():
        return None
    with TrajectoryStore(run_dir) as store:
        runs = store.runs()
        return store.metrics(runs[-1].id) if runs else None


def table_cli(description: str, runs_help: str, tables: Tables) -> None:
    """`--runs DIR --seeds 0,1,2 [--json FILE]`: print `tables(runs, seeds)`'s markdown, and write
    its data as JSON when asked."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs", help=runs_help)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated run seeds")
    parser.add_argument("--json", default=None, help="also write every figure read to this JSON file")
    args = parser.parse_args()
    text, data = tables(Path(args.runs), [int(s) for s in args.seeds.split(",")])
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1, default=str))
