"""Rewards from experts: the verifier's reward blended with expert rubric scores where experts
labelled a trajectory, and with the reward model's score where they did not.

    reward = (w_verifier · verifier + w_expert · expert) / (w_verifier + w_expert)   labelled
    reward = (w_verifier · verifier + w_rm · rm) / (w_verifier + w_rm)               unlabelled, RM given
    reward = verifier                                                                  otherwise

`expert` is the mean over experts of their mean normalised rubric score (current labels of the
rubric's version), `rm` is the reward model's σ(r) — both in [0, 1] like the verifier rewards.
Normalising by the weights keeps the blend on the verifier's scale, so switching the expert terms
on does not change the advantage scale the trainer sees.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, Field, model_validator

from forgerl.review.labels import rubric_mean
from forgerl.review.rubric import DEFAULT_RUBRIC, Rubric
from forgerl.store import TrajectoryStore
from forgerl.types import Trajectory


class ExpertRewardConfig(BaseModel):
    w_verifier: float = Field(1.0, ge=0)
    """Weight of the environment's verifier reward."""
    w_expert: float = Field(1.0, ge=0)
    """Weight of the experts' rubric score on trajectories they labelled."""
    w_rm: float = Field(0.5, ge=0)
    """Weight of the reward model's score on trajectories no expert labelled."""

    @model_validator(mode="after")
    def _some_weight(self) -> ExpertRewardConfig:
        if self.w_verifier + self.w_expert + self.w_rm == 0:
            raise ValueError("all reward weights are zero: give w_verifier, w_expert or w_rm a positive weight")
        return self


def expert_scores(store: TrajectoryStore, rubric: Rubric = DEFAULT_RUBRIC) -> dict[str, float]:
    """Trajectory id -> mean over experts of their current rubric label's mean normalised score."""
    per_traj: dict[str, list[float]] = defaultdict(list)
    for lab in store.labels(kind="rubric", current_only=True):
        if lab.rubric_version == rubric.version:
            per_traj[lab.trajectory_id].append(rubric_mean(lab, rubric))
    return {tid: statistics.fmean(v) for tid, v in per_traj.items()}


def _blend(verifier: float | None, other: float | None, w_v: float, w_o: float) -> float | None:
    if other is None or w_o == 0:
        return verifier
    if verifier is None or w_v == 0:
        return other
    return (w_v * verifier + w_o * other) / (w_v + w_o)


def combined_reward(verifier: float | None, expert: float | None, rm: float | None,
                    config: ExpertRewardConfig = ExpertRewardConfig()) -> float | None:
    if expert is not None and config.w_expert > 0:
        return _blend(verifier, expert, config.w_verifier, config.w_expert)
    return _blend(verifier, rm, config.w_verifier, config.w_rm)


def combined_rewards(trajectories: Sequence[Trajectory], expert: Mapping[str, float],
                     rm: Mapping[str, float] | None = None,
                     config: ExpertRewardConfig = ExpertRewardConfig()) -> list[float | None]:
    """The blended reward of each trajectory (None where nothing scored it)."""
    return [combined_reward(t.reward, expert.get(t.id), (rm or {}).get(t.id), config) for t in trajectories]
