"""forgerl: train tool-using LLM agents with RL the way MiniMax-M2 was trained.

The Python API (docs/python-api.md), imported on first use so that `import forgerl` stays cheap:

    forgerl.train(config, **overrides) -> TrainResult        # as `forgerl train`
    forgerl.evaluate(env, model="default", n=50) -> EvalReport  # as `forgerl eval`
    forgerl.rollout(env, model="default", seed=0) -> Trajectory  # as `forgerl rollout`
"""

from __future__ import annotations

import types
from typing import Any

import forgerl.rollout as _rollout_package  # docstring-only packages: nothing heavy is imported
import forgerl.train as _train_package
from forgerl.api import evaluate  # the standard library only at import
from forgerl.api import rollout as _api_rollout
from forgerl.api import train as _api_train

__version__ = "0.1.0"


class _CallableTrainPackage(types.ModuleType):
    """`forgerl.train` is both the training subpackage and the API function: importing any
    `forgerl.train.*` module sets the package as the `train` attribute, so a plain function of that
    name would be replaced. The package's module object is made callable instead."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _api_train(*args, **kwargs)


class _CallableRolloutPackage(types.ModuleType):
    """`forgerl.rollout`: the asynchronous-rollout subpackage, callable as the API function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _api_rollout(*args, **kwargs)


_train_package.__class__ = _CallableTrainPackage
_rollout_package.__class__ = _CallableRolloutPackage
train = _train_package
rollout = _rollout_package


def __getattr__(name: str) -> Any:
    """TrainConfig and load_config on first use (pydantic, not torch)."""
    if name in ("TrainConfig", "load_config"):
        from forgerl.train import config  # heavy: pydantic, kept out of import forgerl (test_api)

        return getattr(config, name)
    raise AttributeError(f"module 'forgerl' has no attribute {name!r}")


__all__ = ["TrainConfig", "__version__", "evaluate", "load_config", "rollout", "train"]
