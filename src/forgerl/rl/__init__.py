"""RL losses and advantages, as pure functions of tensors (DESIGN.md `rl/`).

Losses share one call signature (`LossFn`, layout in `forgerl.rl.common`) and are chosen by
name: CISPO is the default (M2_NOTES §1); PPO-clip/GRPO, DAPO and GSPO are there to compare
against. Advantages live in `forgerl.rl.advantages`; what the trainer needs to know about each
loss (token- or sequence-level, its options, its default clip) is in `forgerl.rl.traits`.
"""

from __future__ import annotations

from forgerl.rl.advantages import group_normalized, reward_to_go, speed_reward, step_advantages, step_rewards
from forgerl.rl.cispo import cispo_loss
from forgerl.rl.common import BatchCounts
from forgerl.rl.dapo import dapo_loss
from forgerl.rl.gspo import gspo_loss
from forgerl.rl.ppo import grpo_loss, ppo_loss
from forgerl.rl.traits import LOSS_TRAITS, LossTraits, loss_traits
from forgerl.rl.types import LossFn, LossInputError, LossOutput

DEFAULT_LOSS = "cispo"

LOSSES: dict[str, LossFn] = {
    "cispo": cispo_loss,
    "ppo": ppo_loss,
    "grpo": grpo_loss,  # same objective as "ppo"; GRPO's difference is group_normalized advantages
    "dapo": dapo_loss,
    "gspo": gspo_loss,
}


def get_loss(name: str) -> LossFn:
    """The loss registered under `name` (see LOSSES)."""
    try:
        return LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; registered losses: {', '.join(sorted(LOSSES))}") from None


__all__ = [
    "DEFAULT_LOSS",
    "LOSSES",
    "LOSS_TRAITS",
    "BatchCounts",
    "LossFn",
    "LossInputError",
    "LossOutput",
    "LossTraits",
    "cispo_loss",
    "dapo_loss",
    "get_loss",
    "grpo_loss",
    "loss_traits",
    "gspo_loss",
    "group_normalized",
    "ppo_loss",
    "reward_to_go",
    "speed_reward",
    "step_advantages",
    "step_rewards",
]
