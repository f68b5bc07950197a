"""The reward model as a reward component of RL training: the one place the trainer calls it.

Experts label a few hundred trajectories; the trainer produces thousands nobody will read. A reward
model trained on the labels (`forgerl rm train`) scores every fresh training rollout, and the
trainer learns from the blend

    reward = (verifier + w · g · rm) / (1 + w)      rm = σ(r(x)) in [0, 1], w = reward_model.weight
                                                    g = 1 if the episode is well formed, else 0

(`forgerl.review.rewards.combined_reward` with w_verifier = 1, w_rm = w). Normalising by the
weights keeps the reward on the verifier's scale, so the advantage scale does not change when the
component is switched on.

The gate g (forgerl.review.features.well_formed: every output parsed, none cut off, the agent
ended the episode) is there because a learnt reward is only trustworthy on the kind of episode it
was trained to judge. Issue 8's first run had no gate: the policy drifted into unparsable tool
markup, which the reward model — trained on well-formed rollouts only — scored 0.88-0.95, and in
12 steps the verifier reward went from 0.06 to 0. With the gate a malformed episode earns only its
verifier reward (0 unless it passed), so breaking the format can never be worth more than doing
the task; the reward model decides only between episodes that did the task in a readable form.

The weight: with w < 1 a verifier pass always outranks any failure, whatever the reward model
says (a pass gets at least 1/(1+w), a failure at most w/(1+w)); with group-normalised advantages
the weight hardly matters in the groups that all fail — the reward model's ordering is the whole
signal there. The experiments of issue 8 use w = 0.5 (the config default).

`apply_reward_model` runs after rollouts are collected and before they are stored and turned into
advantages (as the rollout source's reward transform, `reward_model_transform`, in every mode), so the store keeps all three numbers per trajectory: `reward_breakdown["verifier"]`
(the environment's reward), `reward_breakdown["reward_model"]` (σ(r)) and `reward` (the blend), with
the details in `metadata["reward_model"]`. Held-out evaluation never goes through here: it keeps
measuring the verifier's reward. Failed rollouts (no reward) are left alone (DESIGN contract 4).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

from forgerl.errors import ConfigError
from forgerl.review.features import verifier_reward, well_formed
from forgerl.review.rewards import ExpertRewardConfig, combined_reward
from forgerl.review.rm import RewardModel
from forgerl.types import Trajectory, TrajectoryStatus

if TYPE_CHECKING:
    from forgerl.train.config import RewardModelSpec
    from forgerl.train.run import Run

META_KEY = "reward_model"  # forgerl.review.features.verifier_reward reads it back
__all__ = ["RewardModelTransform", "apply_reward_model", "load_training_reward_model", "reward_model_metrics",
           "reward_model_transform", "reward_model_transform_for", "verifier_reward"]


def load_training_reward_model(spec: RewardModelSpec) -> RewardModel | None:
    """The reward model `spec` names, loaded once per run; None when the component is off."""
    if spec.path is None:
        return None
    try:
        return RewardModel.load(spec.path)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ConfigError(f"cannot load the reward model at {spec.path}: {exc}") from None


def apply_reward_model(groups: Sequence[Sequence[Trajectory]], model: RewardModel | None,
                       spec: RewardModelSpec) -> dict[str, float]:
    """Blend the reward model's score into every scored rollout of `groups` (in place; one batched
    encoder pass) and return metrics. A no-op returning {} when `model` is None. Idempotent: a
    trajectory that already carries a reward-model score is not blended twice."""
    if model is None:
        return {}
    todo = [t for group in groups for t in group
            if t.status != TrajectoryStatus.FAILED and t.reward is not None and META_KEY not in t.metadata]
    if not todo:
        return {}
    scores = model.score(todo)  # before any reward changes: the encoder reads the verifier's verdict
    weights = ExpertRewardConfig(w_verifier=1.0, w_expert=0.0, w_rm=spec.weight)
    for traj, score in zip(todo, scores, strict=True):
        v = float(traj.reward)  # type: ignore[arg-type]  # filtered above
        gate = well_formed(traj)
        blended = combined_reward(v, None, score if gate else 0.0, weights)
        traj.metadata[META_KEY] = {"verifier_reward": v, "score": score, "weight": spec.weight, "gated": not gate,
                                   "combined": blended, "path": spec.path}
        # the component as it entered the reward (0 when gated); the raw score stays in metadata
        traj.reward_breakdown = {**traj.reward_breakdown, "verifier": v, "reward_model": score if gate else 0.0}
        traj.reward = blended
    return reward_model_metrics(todo)


def reward_model_metrics(trajectories: Sequence[Trajectory]) -> dict[str, float]:
    """The blend's metrics over the trajectories that carry a reward-model score ({} when none):
    computed from what `apply_reward_model` recorded, so a batch blended group by group (or
    reused after a restart) reports as if blended at once."""
    records = [t.metadata[META_KEY] for t in trajectories if isinstance(t.metadata.get(META_KEY), dict)]
    if not records:
        return {}
    verifier = [float(r["verifier_reward"]) for r in records]
    scores = [float(r["score"]) for r in records]
    return {
        "rollout/verifier_reward": statistics.fmean(verifier),
        "rollout/verifier_pass_rate": statistics.fmean(float(v == 1.0) for v in verifier),
        "rollout/rm_score": statistics.fmean(scores),
        "rollout/rm_score_std": statistics.pstdev(scores),
        "rollout/rm_gated_fraction": sum(bool(r["gated"]) for r in records) / len(records),
    }


class RewardModelTransform:
    """The reward model as a rollout source's reward transform (forgerl.rollout.source.RewardTransform)."""

    def __init__(self, model: RewardModel, spec: RewardModelSpec) -> None:
        self.model, self.spec = model, spec

    def apply(self, groups: list[list[Trajectory]]) -> None:
        apply_reward_model(groups, self.model, self.spec)

    def metrics(self, trajectories: list[Trajectory]) -> dict[str, float]:
        return reward_model_metrics(trajectories)


def reward_model_transform_for(spec: RewardModelSpec) -> RewardModelTransform | None:
    """The reward transform `spec` asks for, its model loaded now (call it before the run opens, so a
    reward model that cannot be loaded leaves no run behind); None when the component is off."""
    model = load_training_reward_model(spec)
    return None if model is None else RewardModelTransform(model, spec)


def reward_model_transform(run: Run) -> RewardModelTransform | None:
    """The open run's reward transform from its config's `[reward_model]`, or None when off (for
    sources that build their transform from the run; the trainer itself never loads a reward model)."""
    return reward_model_transform_for(run.config.reward_model)
