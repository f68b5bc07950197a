"""The declared search space: config knobs (dotted TrainConfig keys with value lists or ranges) and
scaffold choices, and the candidates drawn from it.

A scaffold is a *fixed* setting of the agent's operational space, expressed through the perturbation
machinery (forgerl/perturb): each non-default choice is one perturbation dimension forced on (probability
1) and `variant` is the perturbation seed, the same for every episode, so a scaffold rewrites the system
prompt or the tool names the same way on every task (a thing one could deploy), unlike training's
per-episode draws. `ScaffoldChoice()` (all defaults) is the family's own scaffold.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from forgerl.errors import ConfigError
from forgerl.perturb.spec import (
    CHAT_FORMATS,
    NAMING_STYLES,
    RESPONSE_STYLES,
    ChatFormatSpec,
    HeldOutScaffolds,
    PerturbSpec,
    SystemPromptSpec,
    ToolInfoSpec,
    ToolResponseSpec,
)

DEFAULT = "default"
SCAFFOLD_DIMENSIONS = ("system_prompt", "naming", "tool_descriptions", "response_layout", "chat_format",
                       "context_policy", "variant")
CONTEXT_POLICY_PREFIX = "drop_old_tool_outputs:"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScaffoldChoice(_Model):
    """One scaffold; every field's default leaves that part of the family's own scaffold as it is."""

    system_prompt: float | Literal["default"] = DEFAULT
    """A strength in [0, 1]: the system prompt rewritten (persona, wording, order, rules, length; perturb/text.py)."""
    naming: str = DEFAULT
    """A naming style for tool and parameter names (perturb/spec.py NAMING_STYLES)."""
    tool_descriptions: Literal["default", "rewritten"] = DEFAULT
    """`rewritten`: descriptions rewritten and schemas edited (optional params, renesting, order);
    the perturbation machinery does this together with renaming, so it needs a `naming` style."""
    response_layout: str = DEFAULT
    """How tool outputs are rendered (RESPONSE_STYLES; `text` is the environment's own text)."""
    chat_format: str = DEFAULT
    """Another registered chat format (CHAT_FORMATS); default: the run's own."""
    context_policy: str = DEFAULT
    """`drop_old_tool_outputs:N`: tool results but the last replaced once a prompt passes N tokens."""
    variant: int = Field(0, ge=0)
    """The perturbation seed: which rewrite of the prompt / descriptions, the same on every task."""

    @field_validator("system_prompt")
    @classmethod
    def _strength(cls, value: float | str) -> float | str:
        if isinstance(value, float | int) and not 0.0 <= value <= 1.0:
            raise ValueError(f"system_prompt strength must be in [0, 1], got {value}")
        return value

    @model_validator(mode="after")
    def _known(self) -> ScaffoldChoice:
        for name, known in (("naming", NAMING_STYLES), ("response_layout", RESPONSE_STYLES),
                            ("chat_format", CHAT_FORMATS)):
            value = getattr(self, name)
            if value != DEFAULT and value not in known:
                raise ValueError(f"{name} {value!r} is unknown; choose from {[DEFAULT, *known]}")
        if self.tool_descriptions == "rewritten" and self.naming == DEFAULT:
            raise ValueError("tool_descriptions = 'rewritten' needs a naming style (the perturbation machinery "
                             "rewrites descriptions together with names): pick a naming other than 'default'")
        if self.context_policy != DEFAULT:
            self.drop_after()
        return self

    def drop_after(self) -> int | None:
        """The context policy's token threshold, None for the default (keep the whole history)."""
        if self.context_policy == DEFAULT:
            return None
        raw = self.context_policy.removeprefix(CONTEXT_POLICY_PREFIX)
        if raw == self.context_policy or not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"context_policy {self.context_policy!r}: use 'default' or "
                             f"'{CONTEXT_POLICY_PREFIX}N' with N >= 1 prompt tokens")
        return int(raw)

    def name(self) -> str:
        """`default`, or the non-default choices, e.g. `naming=camel,response_layout=json,variant=3`."""
        parts = [f"{k}={v}" for k, v in self.model_dump().items() if k != "variant" and v != DEFAULT]
        if parts and self.variant:
            parts.append(f"variant={self.variant}")
        return ",".join(parts) or DEFAULT

    def perturb_spec(self) -> PerturbSpec:
        """The perturbation spec that forces exactly these choices (nothing held out, nothing else on)."""
        none = HeldOutScaffolds(chat_formats=[], naming_styles=[], response_styles=[])
        spec: dict[str, Any] = {"held_out": none}
        if self.system_prompt != DEFAULT:
            spec["system_prompt"] = SystemPromptSpec(probability=1.0, strength=float(self.system_prompt))
        if self.naming != DEFAULT:
            spec["tool_info"] = ToolInfoSpec(probability=1.0, strength=1.0 if self.tool_descriptions == "rewritten"
                                             else 0.0, naming_styles=[self.naming])
        if self.response_layout != DEFAULT:
            spec["tool_responses"] = ToolResponseSpec(probability=1.0, strength=0.0, styles=[self.response_layout])
        if self.chat_format != DEFAULT:
            spec["chat_format"] = ChatFormatSpec(probability=1.0, formats=[self.chat_format])
        return PerturbSpec(**spec)


class Candidate(_Model):
    """A point of the space: config knobs (dotted keys -> values, applied over the base config) and a scaffold."""

    config: dict[str, Any] = Field(default_factory=dict)
    scaffold: ScaffoldChoice = Field(default_factory=ScaffoldChoice)

    def key(self) -> str:
        """A canonical string: two candidates with the same settings have the same key."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    def label(self) -> str:
        knobs = ",".join(f"{k}={v}" for k, v in sorted(self.config.items()))
        return " ".join(p for p in (knobs, f"scaffold[{self.scaffold.name()}]") if p)


class Range(_Model):
    """A numeric range, expanded into `count` values (geometric with `log`)."""

    low: float
    high: float
    count: int = Field(4, ge=2)
    log: bool = False
    integer: bool = False

    def values(self) -> list[Any]:
        if self.high <= self.low or (self.log and self.low <= 0):
            raise ValueError(f"range needs low < high (and low > 0 with log), got {self.low}..{self.high}")
        out = []
        for i in range(self.count):
            t = i / (self.count - 1)
            v = (math.exp(math.log(self.low) + t * (math.log(self.high) - math.log(self.low))) if self.log
                 else self.low + t * (self.high - self.low))
            out.append(round(v) if self.integer else float(f"{v:.6g}"))
        return list(dict.fromkeys(out))


class SearchSpace(_Model):
    """What a proposer may change: `knobs` (dotted TrainConfig key -> values or a Range) and `scaffold`
    (ScaffoldChoice field -> values). A dimension not listed stays at the base's value."""

    knobs: dict[str, list[Any] | Range] = Field(default_factory=dict)
    scaffold: dict[str, list[Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        for name, values in self.scaffold.items():
            if name not in SCAFFOLD_DIMENSIONS:
                raise ValueError(f"space.scaffold.{name}: unknown dimension; choose from {list(SCAFFOLD_DIMENSIONS)}")
            if not values:
                raise ValueError(f"space.scaffold.{name}: list at least one value")
            for value in values:
                try:
                    ScaffoldChoice(**{name: value})
                except ValidationError as exc:
                    if name != "tool_descriptions":  # checked in combination, when sampled with a naming
                        raise ValueError(f"space.scaffold.{name} = {value!r}: {_first(exc)}") from None
        for key, values in self.knobs.items():
            if not values:
                raise ValueError(f"space.knobs.{key}: list at least one value")
        return self

    def knob_values(self) -> dict[str, list[Any]]:
        return {k: v.values() if isinstance(v, Range) else list(v) for k, v in self.knobs.items()}

    def size(self) -> int:
        return math.prod(len(v) for v in [*self.knob_values().values(), *self.scaffold.values()])

    def sample(self, rng: random.Random, *, tries: int = 100) -> Candidate:
        """A uniformly drawn candidate (combinations the scaffold refuses are drawn again)."""
        for _ in range(tries):
            config = {k: rng.choice(v) for k, v in self.knob_values().items()}
            try:
                scaffold = ScaffoldChoice(**{k: rng.choice(v) for k, v in self.scaffold.items()})
            except ValidationError:
                continue
            return Candidate(config=config, scaffold=scaffold)
        raise ConfigError("the search space yields no valid scaffold: every drawn combination was refused "
                          "(e.g. tool_descriptions = 'rewritten' needs a naming style in the same space)")

    def check(self, candidate: Candidate) -> None:
        """ValueError naming the first setting outside the declared space."""
        values = self.knob_values()
        for key, value in candidate.config.items():
            if key not in values:
                raise ValueError(f"config key {key!r} is not in the search space; declared: {sorted(values)}")
            if value not in values[key]:
                raise ValueError(f"{key} = {value!r} is not one of the declared values {values[key]}")
        for name, value in candidate.scaffold.model_dump().items():
            if value == ScaffoldChoice.model_fields[name].default:
                continue
            if name not in self.scaffold or value not in self.scaffold[name]:
                raise ValueError(f"scaffold.{name} = {value!r} is not in the search space "
                                 f"(declared: {self.scaffold.get(name, 'not searched')})")


def _first(exc: ValidationError) -> str:
    return exc.errors()[0]["msg"].removeprefix("Value error, ")


def nest(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """{"optim.lr": 1e-4} -> {"optim": {"lr": 1e-4}}."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        parts = key.split(".")
        table = out
        for part in parts[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"config key {key!r} crosses a value set by another key")
        table[parts[-1]] = value
    return out


def merged(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`top` over `base`, table by table."""
    out = dict(base)
    for key, value in top.items():
        out[key] = merged(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out


def lookup(data: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted key of nested data (None where absent)."""
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def diff(base_config: Mapping[str, Any], candidate: Candidate) -> dict[str, Any]:
    """What `candidate` changes against the base: {"config": {key: [base, new]}, "scaffold": {dim: [default, new]}}."""
    config = {k: [lookup(base_config, k), v] for k, v in sorted(candidate.config.items()) if lookup(base_config, k) != v}
    default = ScaffoldChoice().model_dump()
    scaffold = {k: [default[k], v] for k, v in candidate.scaffold.model_dump().items() if v != default[k]}
    return {"config": config, "scaffold": scaffold}
