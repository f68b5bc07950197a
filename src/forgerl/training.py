"""The training entry points: `run_training` (what `forgerl train` and `forgerl.train()` run) and
`run_async_training` (an explicit scheduler). Both are the one loop of train/loop.py fed by the
scheduler source (rollout/source.py); the config's `[rollout] mode` picks the scheduler's mode
(sync, fifo, windowed, greedy), its `[reward_model]` becomes the source's reward transform, and its
`[verifier]` becomes this process's app verifier (the appdev family's judge).

Why a module of its own above train/, rollout/ and review/: it wires the three together, so none
of them has to import another upward (the package graph stays acyclic: tests/test_architecture.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from forgerl.envs.appdev.verifier_config import set_app_verifier, set_evidence_root
from forgerl.review.train_hook import reward_model_transform_for
from forgerl.rollout.appdev_verifier import open_app_verifier
from forgerl.rollout.scheduler import SchedulerConfig
from forgerl.rollout.source import SchedulerSource
from forgerl.train.config import TrainConfig
from forgerl.train.interrupt import StopControl
from forgerl.train.loop import TrainResult, train

OnStep = Callable[[int, dict[str, float]], None]
APP_EVIDENCE_DIR = "appdev-evidence"
"""Where a run with `[verifier] keep_evidence` keeps its appdev screenshots, inside the run directory."""


def default_source(config: TrainConfig, scheduler: SchedulerConfig | None = None) -> SchedulerSource:
    """The scheduler source the config asks for, with its reward model (if any) as reward transform.
    The reward model is loaded here, before `train` opens the run: one that cannot be loaded leaves
    no run behind, and train/ never imports the review package."""

    transform = reward_model_transform_for(config.reward_model)
    set_app_verifier(open_app_verifier(config.verifier) if config.verifier.kind == "model" else None)
    set_evidence_root(Path(config.run_dir).resolve() / APP_EVIDENCE_DIR if config.verifier.keep_evidence else None)
    return SchedulerSource(scheduler, reward_transform=None if transform is None else lambda _run: transform)


def run_training(config: TrainConfig, *, resume: bool = False, on_step: OnStep | None = None,
                 control: StopControl | None = None) -> TrainResult:
    """Train as the config says (`forgerl train` runs this)."""
    return train(config, default_source(config), resume=resume, on_step=on_step, control=control)


def run_async_training(config: TrainConfig, scheduler: SchedulerConfig | None = None, *, resume: bool = False,
                       on_step: OnStep | None = None, control: StopControl | None = None) -> TrainResult:
    """Train with an explicit scheduler configuration (None: the config's)."""
    return train(config, default_source(config, scheduler), resume=resume, on_step=on_step, control=control)


__all__ = ["default_source", "run_async_training", "run_training"]
