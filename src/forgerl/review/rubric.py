"""Rubrics as versioned config: what experts score, on which scale, with what guidance.

Why versioned: a label is only comparable with labels made against the same rubric, so every label
stores the rubric version it was made with, and agreement and training group by it. Change an
item's meaning -> bump the version. A rubric is a TOML file:

    version = "swe-v2"
    scale_min = 1
    scale_max = 5
    [[items]]
    name = "correctness"
    guidance = "Does the deliverable do what the task asked? 1 = no, 5 = fully."
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, model_validator


class RubricItem(BaseModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    """Short identifier (lowercase, digits, underscores); also the form field name."""
    guidance: str = ""
    """What the expert should look for, shown next to the score."""


class Rubric(BaseModel):
    version: str = Field(min_length=1, max_length=64)
    """Stored with every label; bump it whenever an item's meaning changes."""
    scale_min: int = 1
    scale_max: int = 5
    """Integer scale, inclusive on both ends."""
    items: list[RubricItem] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Rubric:
        if self.scale_max <= self.scale_min:
            raise ValueError(f"scale_max ({self.scale_max}) must be above scale_min ({self.scale_min})")
        names = [i.name for i in self.items]
        if len(set(names)) != len(names):
            raise ValueError(f"rubric item names must be unique, got {names}")
        return self

    @property
    def scale(self) -> range:
        return range(self.scale_min, self.scale_max + 1)

    def normalise(self, score: float) -> float:
        """A score on this rubric's scale mapped to [0, 1] (how rewards and the RM see it)."""
        return (score - self.scale_min) / (self.scale_max - self.scale_min)

    def validate_scores(self, scores: dict[str, int]) -> dict[str, int]:
        """Every item scored with an integer on the scale, nothing else; ValueError otherwise."""
        missing = [i.name for i in self.items if i.name not in scores]
        extra = [k for k in scores if k not in {i.name for i in self.items}]
        if missing or extra:
            raise ValueError(f"rubric {self.version}: missing scores for {missing}, unknown items {extra}")
        for name, value in scores.items():
            if isinstance(value, bool) or not isinstance(value, int) or value not in self.scale:
                raise ValueError(f"score for {name!r} must be an integer from {self.scale_min} to "
                                 f"{self.scale_max}, got {value!r}")
        return scores


DEFAULT_RUBRIC = Rubric(
    version="forgerl-default-v1",
    items=[
        RubricItem(name="correctness", guidance="Is the final deliverable (answer, patch, file) right? "
                   "1 = wrong or missing, 5 = fully right and checked."),
        RubricItem(name="process", guidance="Are the thinking and tool use sensible: no needless or "
                   "destructive calls, errors read and handled? 1 = reckless, 5 = careful and efficient."),
        RubricItem(name="communication", guidance="Is the reply clear, honest about what was done and "
                   "pleasant to work with? 1 = misleading or rude, 5 = clear and precise."),
    ],
)


def load_rubric(path: str | Path | None) -> Rubric:
    """The rubric in a TOML file, or the default rubric for None. Errors say what to fix."""
    if path is None:
        return DEFAULT_RUBRIC
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"no rubric file at {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML ({exc})") from None
    try:
        return Rubric.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{path} is not a valid rubric: {exc}") from None
