"""DAPO's policy loss: PPO-clip with a raised upper bound and token-level normalisation.

Paper: DAPO (Yu et al., arXiv 2503.14476), "clip-higher" (ε_low = 0.2, ε_high = 0.28) and
"token-level policy gradient loss":

    r_it = π_θ(o_it) / π_old(o_it)
    J(θ) = 1/(Σ_i |o_i|) · Σ_i Σ_t min(r_it · A_it, clip(r_it, 1 - ε_low, 1 + ε_high) · A_it)

A token whose ratio left the clip range on the side its advantage pushes gets zero gradient
(unlike CISPO). DAPO's other parts are data-side, not in the loss: dynamic sampling (drop groups
whose rewards are all equal — their advantages are 0 anyway) and overlong reward shaping. No KL.
"""

from __future__ import annotations

import torch

from forgerl.rl.common import check_clip_range, masked, prepare, token_denominator, token_metrics
from forgerl.rl.types import LossOutput

DAPO_EPS_LOW = 0.2
DAPO_EPS_HIGH = 0.28


def dapo_loss(
    logp: torch.Tensor,  # [B, T] current policy, requires grad
    old_logp: torch.Tensor,  # [B, T] behaviour policy (recorded)
    advantages: torch.Tensor,  # [B] or [B, T]
    mask: torch.Tensor,  # [B, T] 1 = trainable
    *,
    eps_low: float = DAPO_EPS_LOW,
    eps_high: float = DAPO_EPS_HIGH,
    num_tokens: int | torch.Tensor | None = None,
    num_sequences: int | torch.Tensor | None = None,  # unused: DAPO normalises per token
    entropy: torch.Tensor | None = None,  # [B, T], for metrics only
) -> LossOutput:
    """DAPO loss, token-level normalised by `num_tokens` (default: this call's trainable tokens)."""
    check_clip_range(eps_low, eps_high)
    p = prepare(logp, old_logp, advantages, mask)
    ratio = p.log_ratio.exp()  # [B, T], grad
    clipped = ratio.clamp(min=1.0 - eps_low, max=1.0 + eps_high)  # [B, T]
    surrogate = torch.minimum(ratio * p.advantages, clipped * p.advantages)  # [B, T]
    loss = -masked(surrogate, p.trainable).sum() / token_denominator(p.tokens, num_tokens)
    metrics = token_metrics(p, ratio, eps_low=eps_low, eps_high=eps_high, entropy=entropy)
    metrics["loss"] = float(loss.detach())
    return LossOutput(loss=loss, metrics=metrics)
