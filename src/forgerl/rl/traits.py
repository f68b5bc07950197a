"""What each loss is, as data the trainer can switch on (no torch here: the config reads it).

The trainer used to keep lists of loss names (`("cispo", "dapo")` for token-level losses, "cispo"
for the trust-region mask); a new loss then had to be added in several places outside `rl/`. Each
loss now declares its traits once, beside its registration, and `train/` asks for them by name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LossTraits:
    """How a loss normalises and which options it takes."""

    token_level: bool
    """Normalised per token (a sum over tokens / token count), so a trajectory's calls may be merged
    into one training sequence without changing the loss. Sequence-level losses (a mean over
    sequences, or a sequence-level ratio) would change if their sequences were merged."""
    trust_region_mask: bool
    """Takes `trust_region_mask` (drop tokens outside PPO's trust region; CISPO, M2_NOTES §1)."""
    eps_low: float
    """Default lower clip of the importance ratio (bound 1 - eps_low)."""
    eps_high: float
    """Default upper clip of the importance ratio (bound 1 + eps_high)."""


LOSS_TRAITS: dict[str, LossTraits] = {
    # CISPO: M2 removed the lower bound (eps_low = 1 clips the weight at 0 only).
    "cispo": LossTraits(token_level=True, trust_region_mask=True, eps_low=1.0, eps_high=0.28),
    "dapo": LossTraits(token_level=True, trust_region_mask=False, eps_low=0.2, eps_high=0.28),
    "ppo": LossTraits(token_level=False, trust_region_mask=False, eps_low=0.2, eps_high=0.2),
    "grpo": LossTraits(token_level=False, trust_region_mask=False, eps_low=0.2, eps_high=0.2),
    "gspo": LossTraits(token_level=False, trust_region_mask=False, eps_low=3e-4, eps_high=4e-4),
}


def loss_traits(name: str) -> LossTraits:
    """The traits of the loss registered under `name`."""
    try:
        return LOSS_TRAITS[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; registered losses: {', '.join(sorted(LOSS_TRAITS))}") from None
