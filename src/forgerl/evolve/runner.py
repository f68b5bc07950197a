"""Running one experiment: a candidate trained for some steps (or not at all) and measured on a split.

`Runner` is the protocol the search loop talks to, so tests swap in a fake that trains nothing.
`ForgerlRunner` is the real one: the candidate's config is the base config with its knobs applied;
with `steps > 0` it trains through forgerl's Python API (`forgerl.train`) in its own run directory
(forgerl/training.py run_training, what `forgerl.train` runs; seeded by the config's `seed`), saving a checkpoint at the last step, then measures that checkpoint
under the candidate's scaffold on the requested split (evolve/measure.py); with `steps == 0` it
measures the base policy as it is (a scaffold-only search), on an engine loaded once and reused.
The trainer's own periodic held-out evaluation reads the *evaluation* split; its numbers are kept as
evidence in the run's report but never reach a decision (the loop decides on `measurement` only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from forgerl.evolve.measure import measure, with_checkpoint
from forgerl.evolve.space import Candidate, merged, nest
from forgerl.evolve.splits import Measurement, SplitName

if TYPE_CHECKING:
    from forgerl.train.config import TrainConfig


@dataclass
class RunResult:
    measurement: Measurement
    run_dir: Path | None = None
    """The training run's directory (what the doctor reads); None when nothing was trained."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The training run's last logged value of each metric (its report), as evidence."""
    seconds: float = 0.0


class Runner(Protocol):
    def run(self, candidate: Candidate, *, steps: int, tasks: int, split: SplitName, run_dir: Path) -> RunResult:
        """Train `candidate` for `steps` (0: not at all) in `run_dir` and measure it on `tasks` tasks of `split`."""
        ...


def train_config(data: dict[str, Any]) -> TrainConfig:
    """A validated TrainConfig from nested data; ConfigError naming the bad keys (train/config.py load_config)."""
    from forgerl.train.config import load_config  # cycle: package train imports much of forgerl

    return load_config(None, **data)


def candidate_config(base: TrainConfig, candidate: Candidate, **overrides: Any) -> TrainConfig:
    """The base config with the candidate's knobs (and `overrides`) applied; ConfigError naming a bad key."""
    return train_config(merged(base.model_dump(), merged(nest(candidate.config), overrides)))


class ForgerlRunner:
    """Trains and measures through forgerl itself. `concurrency`: episodes measured at once."""

    def __init__(self, base: TrainConfig, *, concurrency: int = 16) -> None:
        self.base, self.concurrency = base, concurrency
        self._engines: dict[tuple[str, str, int], Any] = {}

    def run(self, candidate: Candidate, *, steps: int, tasks: int, split: SplitName, run_dir: Path) -> RunResult:
        start = time.perf_counter()
        cfg = candidate_config(self.base, candidate)
        if steps == 0:
            m = measure(self._engine(cfg), cfg, candidate.scaffold, split, tasks, out_dir=run_dir / split,
                        concurrency=self.concurrency)
            return RunResult(m, seconds=time.perf_counter() - start)
        from forgerl.train.report import write_report  # cycle: package train imports much of forgerl
        from forgerl.training import run_training  # heavy: torch, only when a candidate trains

        train_dir = run_dir / "train"
        cfg = candidate_config(self.base, candidate, steps=steps, run_dir=str(train_dir), checkpoint_every=steps,
                               eval={"every": steps})
        run_training(cfg)  # what forgerl.train() runs (forgerl/api.py), minus its plug-in loading
        write_report(train_dir)
        engine = self._fresh_engine(cfg)
        try:
            with_checkpoint(engine, train_dir / "checkpoints" / f"step_{steps:06d}", steps)
            m = measure(engine, cfg, candidate.scaffold, split, tasks, out_dir=run_dir / split,
                        concurrency=self.concurrency)
        finally:
            _close(engine)
        return RunResult(m, run_dir=train_dir, metrics=last_metrics(train_dir), seconds=time.perf_counter() - start)

    def _engine(self, cfg: TrainConfig) -> Any:
        key = (cfg.model, cfg.chat_format, cfg.max_context)
        if key not in self._engines:
            self._engines[key] = self._fresh_engine(cfg)
        return self._engines[key]

    @staticmethod
    def _fresh_engine(cfg: TrainConfig) -> Any:
        from forgerl.engine import load_engine  # heavy: torch and the model, only when measuring

        return load_engine(cfg.model, chat_format=cfg.chat_format, max_context=cfg.max_context, seed=cfg.seed,
                           device=cfg.device)

    def close(self) -> None:
        for engine in self._engines.values():
            _close(engine)
        self._engines.clear()


def _close(engine: Any) -> None:
    close = getattr(engine, "close", None)
    if close is not None:
        close()


def last_metrics(run_dir: Path) -> dict[str, float]:
    """Each metric's value at the last step it was logged (the run's report, as evidence)."""
    from forgerl.store import TrajectoryStore  # heavy: sqlite store, only after a run
    from forgerl.train.report import metric_table  # cycle: train imports much of forgerl; only after a run

    with TrajectoryStore(run_dir) as store:
        runs = store.runs()
        if not runs:
            return {}
        table = metric_table(store, runs[-1].id)
    last: dict[str, float] = {}
    for row in table.values():
        last.update(row)
    return last
