"""An evolve run's settings, stored as TOML (`forgerl evolve run EVOLVE.toml`):

    base = "examples/configs/tool-reasoning.toml"   # the base config (default: TrainConfig's defaults)
    out = "runs/evolve"
    proposer = "halving"                            # or "model" ([model] below)
    [base_set]                                      # dotted overrides of the base config
    "eval.tasks" = 8
    [budget]
    max_runs = 20
    steps_per_run = 2                               # 0: no training, a scaffold-only search
    wall_s = 1800
    [objective]
    metric = "success_rate"
    validation_tasks = 32
    margin = 0.03
    [space.knobs]
    "optim.lr" = [1e-4, 3e-4]
    "loss.eps_high" = {low = 0.2, high = 5.0, count = 3, log = true}
    [space.scaffold]
    naming = ["default", "camel", "synonym"]
    response_layout = ["default", "json", "table"]
    [halving]
    candidates = 8
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forgerl.errors import ConfigError
from forgerl.evolve.budget import Budget
from forgerl.evolve.decide import Objective
from forgerl.evolve.halving import HalvingSettings
from forgerl.evolve.model_proposer import ModelSettings
from forgerl.evolve.space import SearchSpace


class EvolveSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base: str | None = None
    """A training config TOML (as `forgerl train --config` takes); None: the defaults."""
    base_set: dict[str, Any] = Field(default_factory=dict)
    """Dotted overrides of the base config (`"eval.tasks" = 8`), applied before the search."""
    out: str = "runs/evolve"
    """The evolve directory: decisions.jsonl, runs/NNN, evaluation/, proposer/."""
    proposer: Literal["halving", "model"] = "halving"
    budget: Budget = Field(default_factory=Budget)
    objective: Objective = Field(default_factory=Objective)
    space: SearchSpace = Field(default_factory=SearchSpace)
    halving: HalvingSettings = Field(default_factory=HalvingSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    concurrency: int = Field(16, ge=1)
    """Episodes measured at once."""
    evaluate: bool = True
    """After the search, measure the base and the chosen candidate on the evaluation split."""


def load_settings(path: str | Path | None = None, **overrides: Any) -> EvolveSettings:
    """Settings from a TOML file (None: defaults) with keyword `overrides` on top (None values ignored)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"evolve settings file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"evolve settings file {path} is not valid TOML: {exc}") from None
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    try:
        return EvolveSettings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors())
        raise ConfigError(f"invalid evolve settings ({path or 'defaults'}): {problems}") from None
