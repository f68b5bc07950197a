"""What rollout collection reads of an open training run, as a structural type.

Why not import train/run.py's `Run`: the trainer builds on rollout/ (its loop consumes rollout
sources, its config holds the scheduler's table), so rollout/ must not import train/ — not even
for annotations. `forgerl.train.run.Run` has every attribute below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class RunView(Protocol):
    config: Any
    """The run's TrainConfig (forgerl.train.config): env, difficulty, groups, sampling, perturb, ..."""
    engine: Any
    """The engine the run's rollouts sample from."""
    fmt: Any
    """The run's chat format."""
    store: Any
    """The run's TrajectoryStore."""
    run_id: str
    run_dir: Path
    step: int
    """Optimizer steps completed."""
    version: int
    """Policy version of the engine's weights."""


TrainingConfig = Any
"""forgerl.train.config.TrainConfig, named without importing train (see the module docstring)."""

__all__ = ["RunView", "TrainingConfig"]
