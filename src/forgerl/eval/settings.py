"""What an evaluation runs with: training's held-out evaluation settings (read from TrainConfig, not
repeated here) and a user's changes to them, named in one line.

Defaults are training's held-out evaluation (train/config.py TrainConfig: env, model, chat format,
`eval.tasks`, the family's training difficulty, `max_turns`, `max_tokens`, `eval.temperature`,
`max_context`), so `forgerl eval` with no options reports the number a run's report shows for the
same model. Imports nothing heavy at module level: `forgerl eval` (cli/eval.py) reads these while
`forgerl --help` must stay fast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

ALL_DIFFICULTIES = "all"


@dataclass
class EvalSettings:
    """What an evaluation runs with; `held_out_settings` gives training's held-out evaluation."""

    env: str
    model: str
    n: int
    difficulty: int | None  # None: every level of the family, in turn
    seed: int
    chat_format: str
    max_turns: int
    max_tokens: int
    temperature: float
    max_context: int


def held_out_settings(env: str | None = None, config: Any = None) -> EvalSettings:
    """Training's held-out evaluation for family `env` (default: training's family): of `config`
    (a TrainConfig, e.g. a run's `--config`), or of TrainConfig's defaults — the one place these
    numbers live (train/rollouts.py `evaluate`). A curriculum config evaluates one family at a time:
    `env` names it, at the family's default levels."""
    from forgerl.train.config import TrainConfig  # cycle: package train imports eval

    if config is None:
        config = TrainConfig.model_validate({} if env is None else {"env": env})  # the family's training difficulty
    curriculum = getattr(config, "curriculum", None)
    families = curriculum.families() if curriculum is not None else [config.env]
    if env is None and curriculum is not None:
        from forgerl.errors import ConfigError  # heavy: pydantic, kept out of this import (test_eval.py)

        raise ConfigError(f"this config trains a curriculum over {', '.join(families)}: name the family to "
                          "evaluate with --env")
    env = env or config.env
    levels = config.difficulty if env == config.env and curriculum is None else list(TrainConfig.model_validate(
        {"env": env}).difficulty)
    return EvalSettings(env=env, model=config.model, n=config.eval.tasks, difficulty=_one_level(env, levels),
                        seed=config.seed, chat_format=config.chat_format, max_turns=config.max_turns,
                        max_tokens=config.max_tokens, temperature=config.eval.temperature,
                        max_context=config.max_context)


def _one_level(env: str, levels: list[int]) -> int | None:
    """Training cycles its held-out tasks through `levels`; eval takes one level or all of them."""
    if len(levels) == 1:
        return levels[0]
    from forgerl.envs.base import family_info  # heavy: forgerl.envs, pydantic, kept out of this import (test_eval.py)

    return None if list(family_info(env).difficulties) == list(levels) else levels[0]


def resolve_settings(env: str | None = None, model: str | None = None, n: int | None = None,
                     difficulty: int | str | None = None, seed: int | None = None, chat_format: str | None = None,
                     max_turns: int | None = None, max_tokens: int | None = None, temperature: float | None = None,
                     config: Any = None) -> tuple[EvalSettings, EvalSettings]:
    """(settings used, training's held-out settings for the same family — of `config` when given):
    every None is training's value; `difficulty` may be ALL_DIFFICULTIES."""
    from forgerl.errors import ConfigError  # heavy: pydantic, kept out of this import (test_eval.py)

    base = held_out_settings(env, config)
    if isinstance(difficulty, str):
        if difficulty.strip().lower() == ALL_DIFFICULTIES:
            level: int | None = None
        else:
            try:
                level = int(difficulty)
            except ValueError:
                raise ConfigError(f"--difficulty must be a level number or '{ALL_DIFFICULTIES}', got {difficulty!r}") from None
    else:
        level = base.difficulty if difficulty is None else difficulty
    chosen = {"model": model, "n": n, "seed": seed, "chat_format": chat_format, "max_turns": max_turns,
              "max_tokens": max_tokens, "temperature": temperature}
    used = dataclasses.replace(base, difficulty=level, **{k: v for k, v in chosen.items() if v is not None})
    return used, base


def settings_line(used: EvalSettings, training: EvalSettings) -> str:
    """One line naming the settings, and those that differ from training's held-out evaluation."""
    def show(s: EvalSettings, name: str) -> str:
        value = getattr(s, name)
        if name == "difficulty" and value is None:
            return ALL_DIFFICULTIES
        if name == "temperature" and value == 0:
            return "0 (greedy)"
        return str(value)

    names = ("model", "n", "difficulty", "max_turns", "max_tokens", "temperature", "seed", "chat_format")
    shown = ", ".join(f"{name} {show(used, name)}" for name in names)
    differ = [f"{name} {show(used, name)} (training: {show(training, name)})" for name in names
              if getattr(used, name) != getattr(training, name)]
    if not differ:
        return f"eval settings: {used.env}, {shown}: the same as training's held-out evaluation"
    return f"eval settings: {used.env}, {shown}. Differs from training's held-out evaluation in: {'; '.join(differ)}"
