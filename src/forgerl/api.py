"""The Python API: `forgerl.train`, `forgerl.evaluate`, `forgerl.rollout` (docs/python-api.md).

Thin wrappers over what the commands run (`forgerl train`: forgerl/training.py's run_training and
train/report.py; `forgerl eval`: eval/run.py's run_eval; `forgerl rollout`: cli/transcript.py's
run_demo), so a script and the command line train, evaluate and roll out identically. They print
nothing unless asked (`show=True`) and return the result objects. Heavy imports (torch, the
engine) happen inside the calls: `import forgerl` stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forgerl.eval.run import EvalReport
    from forgerl.train.config import TrainConfig
    from forgerl.train.loop import TrainResult
    from forgerl.types import Trajectory


def train(config: TrainConfig | Mapping[str, Any] | str | Path | None = None, *, resume: bool = False,
          on_step: Callable[[int, dict[str, float]], None] | None = None, report: bool = True,
          **overrides: Any) -> TrainResult:
    """Run RL training as `forgerl train` does and return its TrainResult (run directory, held-out
    reward per evaluated step, seconds).

    `config`: a TrainConfig, a dict of its fields, a TOML file, or None for the defaults; keyword
    `overrides` replace fields (`steps=3`, `run_dir="runs/x"`, `logging={"backends": ["wandb"]}`).
    `resume=True` continues the run in `run_dir` from its last checkpoint (pass that run's own
    config, e.g. `forgerl.train("runs/x/config.toml", resume=True)`). `on_step(step, metrics)` sees
    every step's metrics. `report`: write report.md and reward.png into the run directory at the end.
    A bad config raises ConfigError before anything runs.

    >>> result = forgerl.train({"model": "tiny-random", "env": "arithmetic", "steps": 2}, run_dir="runs/demo")
    >>> result.eval_rewards          # [(0, 0.0), (2, 0.03)]
    """
    from forgerl.plugins import load_run_plugins  # heavy: pydantic (via forgerl.errors), kept out of import forgerl
    from forgerl.train.report import write_report  # heavy: pydantic, kept out of import forgerl
    from forgerl.training import run_training  # heavy: torch, kept out of import forgerl

    cfg = as_train_config(config, overrides)
    load_run_plugins(cfg.plugins)
    result = run_training(cfg, resume=resume, on_step=on_step)
    if report:
        write_report(cfg.run_dir)
    return result


def as_train_config(config: TrainConfig | Mapping[str, Any] | str | Path | None,
                    overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """A validated TrainConfig from any of the forms `train` takes, with `overrides` applied on top."""
    from pydantic import ValidationError

    from forgerl.errors import ConfigError  # heavy: pydantic (via forgerl.types), kept out of import forgerl
    from forgerl.train.config import TrainConfig, load_config  # heavy: pydantic, kept out of import forgerl

    overrides = dict(overrides or {})
    if config is None or isinstance(config, (str, Path)):
        return load_config(config, **overrides)  # the file's own errors name the file
    if isinstance(config, TrainConfig):
        data: dict[str, Any] = config.model_dump()
    elif isinstance(config, Mapping):
        data = dict(config)
    else:
        raise ConfigError(f"config must be a TrainConfig, a dict, a TOML path or None, not {type(config).__name__}")
    try:
        return TrainConfig.model_validate({**data, **overrides})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid training config: {problems}") from None


def evaluate(env: str, model: str = "default", n: int = 50, *, seed: int = 0, out_dir: str | Path | None = None,
             show: bool = False, **options: Any) -> EvalReport:
    """Evaluate `model` on `n` held-out tasks of the family `env`, as `forgerl eval` does: the
    EvalReport has the pass rate with a 95% Wilson interval overall (`report.overall`) and per
    category (`report.groups`). `out_dir` also stores the trajectories and eval_report.json there.
    `options` go to forgerl.eval.run.run_eval: difficulty, split, chat_format, max_turns, max_tokens,
    temperature, concurrency, group_by, engine (an engine object to use instead of loading `model`).
    `show=True` prints the table.

    >>> report = forgerl.evaluate("arithmetic", model="tiny-random", n=8, max_tokens=32)
    >>> report.overall.pass_rate, report.overall.ci
    """
    from forgerl.eval.run import run_eval  # heavy: pydantic, kept out of import forgerl

    return run_eval(env, model, n, seed=seed, out_dir=out_dir, console=_console(show), **options)


def rollout(env: str, model: str = "default", seed: int = 0, *, max_turns: int = 4, max_tokens: int = 128,
            save_path: str | Path | None = None, show: bool = False, **options: Any) -> Trajectory:
    """One agent episode on task `seed` of the family `env`, as `forgerl rollout` does; returns the
    Trajectory (messages, the exact token ids and logprobs of every LLM call, status, reward and
    its breakdown). `save_path` writes it as JSON; `show=True` prints the transcript. `options` go
    to forgerl.cli.transcript.run_demo: chat_format, engine (an engine object instead of loading `model`).

    >>> trajectory = forgerl.rollout("arithmetic", model="tiny-random", seed=3)
    >>> trajectory.status, trajectory.reward
    """
    from forgerl.cli.transcript import run_demo  # heavy: pydantic, kept out of import forgerl

    return run_demo(model=model, env=env, seed=seed, max_turns=max_turns, max_tokens=max_tokens,
                    save_path=save_path, console=_console(show), **options)


def _console(show: bool) -> Any:
    from rich.console import Console

    return Console(quiet=not show)


__all__ = ["as_train_config", "evaluate", "rollout", "train"]
