"""Reading a finished (or running) run directory into a `RunSeries`: config.toml, the store's
per-step metrics of the run's latest store run, and each consumed step's trajectories.

The store is read through `TrajectoryStore` (WAL: a run can be diagnosed while it trains; values a
resume superseded are left out, as in the report). Trajectories are decoded once per diagnosis
(about 1 s per thousand on the main job's).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from forgerl.doctor.series import RunSeries, step_stats
from forgerl.errors import ConfigError
from forgerl.store import STORE_FILENAME, StoreError, TrajectoryStore
from forgerl.types import Trajectory

CONFIG_FILENAME = "config.toml"


def load_run(run_dir: str | Path) -> RunSeries:
    """The run in `run_dir` as the detectors read it; ConfigError when it is not a run directory."""
    run_dir = Path(run_dir)
    store = run_dir / STORE_FILENAME
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a directory: give the run directory of a `forgerl train` run "
                          "(the --run-dir it was trained with, e.g. runs/latest)")
    if not store.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no {STORE_FILENAME}): give the --run-dir of a "
                          "`forgerl train` run, e.g. runs/latest")
    series = RunSeries(config=_read_config(run_dir))
    try:
        with TrajectoryStore(run_dir) as opened:
            _read_store(opened, series, store)
    except StoreError as exc:
        raise ConfigError(f"{store} is not a readable forgerl store ({exc}): give the run directory of a "
                          "`forgerl train` run") from None
    return series


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CONFIG_FILENAME
    if not path.is_file():
        return {}  # an old or foreign run: detectors fall back to the defaults
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}): restore the run's config.toml or delete it "
                          "(the doctor then assumes the defaults)") from None


def _read_store(opened: TrajectoryStore, series: RunSeries, store: Path) -> None:
    runs = opened.runs()
    if not runs:
        raise ConfigError(f"{store} holds no run yet: the run failed before it started; nothing to diagnose")
    run_id = runs[-1].id
    for step, name, value in opened.metrics(run_id):
        series.add_step(step, {name: value})
    by_step: dict[int, list[Trajectory]] = {}
    filters: dict[str, Any] = {"run_id": run_id, "consumed": True, "order": "step"}
    # the consuming step is a store column, not part of the payload: rows and payloads in the same order
    for row, trajectory in zip(opened.iter_rows(**filters), opened.iter_trajectories(**filters), strict=True):
        if row["id"] != trajectory.id:
            raise ConfigError(f"{store} changed while it was read: run the doctor again")
        by_step.setdefault(int(row["step"]), []).append(trajectory)
    for step, trajectories in sorted(by_step.items()):
        # trained at `step` from policy version step - 1 (each step pushes one version; a resume restores both)
        stats, examples = step_stats(trajectories, trainer_version=step - 1)
        series.add_step(step, stats)
        series.add_examples(step, examples)
