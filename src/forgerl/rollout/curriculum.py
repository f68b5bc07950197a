"""A staged, mixed-domain curriculum: which family, difficulty and limits each group of a step gets.

    [[curriculum.stages]]
    steps = 20
    domains.tool-reasoning = { weight = 0.7, difficulty = [1, 2] }
    domains.arithmetic = { weight = 0.3, difficulty = "1-2", max_context = 1024 }

Why mixed stages: M2 samples every RL stage from all of its domains at once (sequential
per-domain stages transfer negatively) and changes, from stage to stage, the domain ratios, the
per-domain context limit and the difficulty. So every step of a stage draws groups of all its
domains, in the stage's ratios.

How groups are allotted: by smooth weighted round-robin over the stage's group slots (slot k is
group k % G of the stage's step k // G). At every slot each domain's credit grows by its weight
and the domain with the most credit takes the slot and pays the total weight back. Why not
independent draws per group: with a handful of groups per step, draws drift far from the
ratios (two groups at 0.7/0.3 give no arithmetic 49% of the time); the round-robin keeps each
domain's count within one group of `weight x slots` over every prefix of a stage, so ratios are
exact over a cycle and steps are not starved. It is deterministic: a function of the stage and
the slot, hence identical after a resume (the scheduler replays the stream from its start).

The stage is a function of the step alone: stage i covers the steps after the stages before it;
the last stage runs on to the end of the run, however long (`forgerl train --steps 3` on a long
curriculum stays in its first stage). Task seeds stay those of (run seed, step, group), and a
group's difficulty is drawn from its domain's levels by the seed, as without a curriculum.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from forgerl.envs.base import family_info
from forgerl.envs.rewards import verifier_reward
from forgerl.errors import ConfigError
from forgerl.rollout.tasks import training_seed
from forgerl.types import Trajectory

_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def _levels(value: object) -> object:
    """`difficulty = "2-4"` (an inclusive range) or a TOML array of levels -> a list of levels."""
    if isinstance(value, str):
        match = _RANGE.match(value)
        if match is None:
            raise ValueError(f"difficulty {value!r} is neither a list of levels nor a range such as \"1-3\"")
        low, high = int(match[1]), int(match[2])
        if low > high:
            raise ValueError(f"difficulty range {value!r} is empty: write the lower level first")
        return list(range(low, high + 1))
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True, strict=True)


class DomainConfig(_Strict):
    """One family's share of a stage: `domains.<family> = { weight = ..., difficulty = ... }`."""

    weight: float = Field(gt=0)
    """Relative share of the stage's groups (normalised over the stage's domains)."""
    difficulty: Annotated[list[Annotated[int, Field(ge=1)]] | None, BeforeValidator(_levels)] = Field(None, min_length=1)
    """Levels to draw this domain's tasks from: a list, or an inclusive range "1-3". Default: the
    family's lowest level."""
    max_context: int | None = Field(None, ge=2)
    """Context limit (prompt + completion) of this domain's episodes; None: the run's max_context.
    At most the run's max_context (the engine is sized by it)."""
    max_turns: int | None = Field(None, ge=1)
    """LLM calls per episode of this domain; None: the run's max_turns."""
    max_tokens: int | None = Field(None, ge=1)
    """New tokens per LLM call of this domain; None: the run's max_tokens."""


class StageConfig(_Strict):
    """One `[[curriculum.stages]]` entry."""

    steps: int = Field(ge=1)
    """Optimizer steps of this stage (the last stage runs on to the end of the run)."""
    domains: dict[str, DomainConfig] = Field(min_length=1)
    """Family name -> its weight, difficulty and limits in this stage."""
    name: str | None = None
    """A label for the report (default: "stage N")."""


class AdaptiveConfig(_Strict):
    """`[curriculum.adaptive]`: move a domain's difficulty along its stage's levels by its own
    rollout pass rate. Each domain starts a stage at its lowest listed level; after every step, a
    domain whose verifier pass rate stayed above `raise_above` in each of its last `window` steps
    (since its last change) goes one level up, below `lower_below` one level down."""

    window: int = Field(3, ge=1)
    """Consecutive steps (with groups of the domain) the pass rate must stay beyond a threshold."""
    raise_above: float = Field(0.8, ge=0, le=1)
    """Pass rate above which the domain moves to its next listed level."""
    lower_below: float = Field(0.2, ge=0, le=1)
    """Pass rate below which the domain moves to its previous listed level."""

    @model_validator(mode="after")
    def _ordered(self) -> AdaptiveConfig:
        if self.lower_below >= self.raise_above:
            raise ValueError(f"lower_below ({self.lower_below}) must be smaller than raise_above ({self.raise_above})")
        return self


class CurriculumConfig(_Strict):
    """`[[curriculum.stages]]`: mixed-domain stages in order. When present, it decides every
    training and held-out task's family, difficulty and limits; `env` and `difficulty` are not used."""

    stages: list[StageConfig] = Field(min_length=1)
    """The stages, in order."""
    adaptive: AdaptiveConfig | None = None
    """Off by default (each group's level is drawn from its domain's levels by the task seed)."""

    def stage_index(self, step: int) -> int:
        """The stage of 0-based optimizer step `step` (the last stage has no end)."""
        end = 0
        for i, stage in enumerate(self.stages[:-1]):
            end += stage.steps
            if step < end:
                return i
        return len(self.stages) - 1

    def stage_start(self, index: int) -> int:
        return sum(stage.steps for stage in self.stages[:index])

    def families(self) -> list[str]:
        """Every family of the curriculum, in order of first appearance."""
        return list(dict.fromkeys(name for stage in self.stages for name in stage.domains))

    def unreached(self, steps: int) -> list[int]:
        """Indices of stages a run of `steps` steps never enters."""
        return [i for i in range(len(self.stages)) if self.stage_start(i) >= steps]


def check_curriculum(curriculum: CurriculumConfig) -> None:
    """Every family is registered (plug-ins are loaded first) and has every level asked of it;
    a family that runs its own multi-agent episodes is fine. Raises ConfigError saying what to fix."""
    for i, stage in enumerate(curriculum.stages):
        for name, domain in stage.domains.items():
            where = f"curriculum.stages[{i}].domains.{name}"
            try:
                family = family_info(name)
            except KeyError as exc:
                raise ConfigError(f"{where}: {exc.args[0]}", hint="use one of the registered families, or load "
                                  "the plug-in that registers it (`plugins = [...]`)") from None
            wrong = [d for d in domain.difficulty or () if d not in family.difficulties]
            if wrong:
                raise ConfigError(f"{where}: family {name!r} has no difficulty {wrong[0]}; its difficulties are "
                                  f"{list(family.difficulties)}", hint="set difficulty to a list (or range) of those levels")


def default_levels(family: str) -> list[int]:
    return [min(family_info(family).difficulties)]


def round_robin(weights: Sequence[float]) -> Iterator[int]:
    """Smooth weighted round-robin: the index of the domain taking each successive slot. Every
    prefix of n slots gives domain d a count within one of n x w_d / sum(w)."""
    total = float(sum(weights))
    credit = [0.0] * len(weights)
    while True:
        for d, w in enumerate(weights):
            credit[d] += w
        best = max(range(len(weights)), key=lambda d: (credit[d], -d))
        credit[best] -= total
        yield best


def stage_families(stage: StageConfig, slots: int) -> list[str]:
    """The families of a stage's first `slots` group slots (slot = step in stage x G + group)."""
    names = list(stage.domains)
    picks = round_robin([stage.domains[n].weight for n in names])
    return [names[next(picks)] for _ in range(slots)]


class AdaptiveLevels:
    """The adaptive rule's state: each (stage, domain)'s position in its sorted levels and the pass
    rates seen since its last change. Its history is the store's `domain/<family>/pass_rate`
    metrics, so a resume rebuilds it exactly by replaying them (`replay`)."""

    def __init__(self, curriculum: CurriculumConfig) -> None:
        assert curriculum.adaptive is not None
        self.curriculum, self.rule = curriculum, curriculum.adaptive
        self.position: dict[tuple[int, str], int] = {}
        self.seen: dict[tuple[int, str], list[float]] = {}

    def levels(self, stage: int, family: str) -> list[int]:
        return sorted(self.curriculum.stages[stage].domains[family].difficulty or default_levels(family))

    def level(self, stage: int, family: str) -> int:
        return self.levels(stage, family)[self.position.get((stage, family), 0)]

    def observe(self, step: int, pass_rates: dict[str, float]) -> dict[str, int]:
        """Step `step` (0-based) was trained with these per-family pass rates: apply the rule; the
        families whose level moved, with the move (+1 / -1)."""
        stage, moves = self.curriculum.stage_index(step), {}
        for family, rate in pass_rates.items():
            if family not in self.curriculum.stages[stage].domains:
                continue  # an asynchronous batch's group of the previous stage
            key = (stage, family)
            seen = self.seen.setdefault(key, [])
            seen.append(rate)
            recent = seen[-self.rule.window:]
            if len(recent) < self.rule.window:
                continue
            move = 1 if min(recent) > self.rule.raise_above else -1 if max(recent) < self.rule.lower_below else 0
            position = min(max(self.position.get(key, 0) + move, 0), len(self.levels(stage, family)) - 1)
            if position != self.position.get(key, 0):
                self.position[key], moves[family] = position, move
                seen.clear()
        return moves

    def replay(self, pass_rates_by_step: dict[int, dict[str, float]]) -> None:
        """Rebuild the state from the pass rates logged for steps 0, 1, ... (a resume)."""
        for step in sorted(pass_rates_by_step):
            self.observe(step, pass_rates_by_step[step])

    def metrics(self, step: int, moves: dict[str, int]) -> dict[str, float]:
        """`curriculum/<family>/difficulty`: the level the stage's domains are drawn at next;
        `curriculum/<family>/difficulty_change`: the move, at the step it happened (the event)."""
        stage = self.curriculum.stage_index(step + 1)
        out = {f"curriculum/{f}/difficulty": float(self.level(stage, f)) for f in self.curriculum.stages[stage].domains}
        out.update({f"curriculum/{f}/difficulty_change": float(m) for f, m in moves.items()})
        return out


def curriculum_specs(curriculum: CurriculumConfig, *, run_seed: int, groups_per_step: int,
                     adaptive: AdaptiveLevels | None = None) -> Iterator[dict[str, Any]]:
    """Task k of the run (step k // G, group k % G) with its family, difficulty, stage and limits;
    its seed is that of (run seed, step, group), as without a curriculum. With `adaptive`, the
    level is the rule's current one for the domain, read when the spec is drawn (in sync mode:
    when its step is collected, after the previous step updated the rule)."""
    picks: Iterator[int] | None = None
    current = -1
    for k in itertools.count():
        step, group = divmod(k, groups_per_step)
        index = curriculum.stage_index(step)
        stage = curriculum.stages[index]
        names = list(stage.domains)
        if index != current:  # a new stage: its round-robin starts afresh at its first slot
            picks, current = round_robin([stage.domains[n].weight for n in names]), index
        assert picks is not None
        family = names[next(picks)]
        domain = stage.domains[family]
        seed = training_seed(run_seed, step, group)
        levels = domain.difficulty or default_levels(family)
        level = adaptive.level(index, family) if adaptive is not None else levels[seed % len(levels)]
        yield {"k": k, "seed": seed, "difficulty": level, "family": family, "stage": index,
               "max_context": domain.max_context, "max_turns": domain.max_turns, "max_tokens": domain.max_tokens}


def eval_specs(curriculum: CurriculumConfig, tasks: int) -> list[dict[str, Any]]:
    """Held-out task i of an evaluation: the curriculum's families in turn (i % D), each at the
    levels and limits of the last stage that names it (the curriculum's target), so every
    evaluation of the run measures the same fixed set and curves compare across stages."""
    target: dict[str, DomainConfig] = {}
    for stage in curriculum.stages:
        target.update(stage.domains)
    names = curriculum.families()
    specs = []
    for i in range(tasks):
        family = names[i % len(names)]
        domain = target[family]
        levels = domain.difficulty or default_levels(family)
        specs.append({"family": family, "difficulty": levels[(i // len(names)) % len(levels)],
                      "max_context": domain.max_context, "max_turns": domain.max_turns, "max_tokens": domain.max_tokens})
    return specs


def domain_metrics(curriculum: CurriculumConfig, step: int, trajectories: list[Trajectory],
                   specs: Sequence[dict[str, Any]]) -> dict[str, float]:
    """A curriculum batch's metrics: `curriculum/stage` (1-based) of the step trained on, and per
    family its groups, mean reward and verifier pass rate."""
    out = {"curriculum/stage": float(curriculum.stage_index(step) + 1)}
    for family in curriculum.families():
        groups = sum(1 for spec in specs if spec.get("family") == family)
        scored = [t for t in trajectories if t.family == family and t.reward is not None]
        if not groups and not scored:
            continue
        out[f"domain/{family}/groups"] = float(groups)
        if scored:
            out[f"domain/{family}/reward"] = sum(float(t.reward or 0.0) for t in scored) / len(scored)
            out[f"domain/{family}/pass_rate"] = sum(float(verifier_reward(t) == 1.0) for t in scored) / len(scored)
    return out


__all__ = ["AdaptiveConfig", "AdaptiveLevels", "CurriculumConfig", "DomainConfig", "StageConfig", "check_curriculum", "curriculum_specs",
           "domain_metrics", "eval_specs", "round_robin", "stage_families"]
