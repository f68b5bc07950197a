"""CISPO: clipped IS-weight policy optimisation, forgerl's default loss (M2_NOTES §1).

Paper: MiniMax-M1 (arXiv 2506.13585) §3.1; used for MiniMax-M2 (arXiv 2605.26494 §6.1.4).

    r_it = π_θ(o_it) / π_old(o_it)
    ŵ_it = sg(clip(r_it, 1 - ε_low, 1 + ε_high))
    J(θ) = 1/(Σ_i |o_i|) · Σ_i Σ_t ŵ_it · A_it · log π_θ(o_it)          (loss = -J)

Unlike PPO-style clipping, the gradient of every token flows (through log π only) with its
weight capped: a rare "fork" token whose ratio left the trust region keeps its update instead of
being zeroed. The optional trust-region mask (M1's unified form) drops a token when
(A > 0 and r > 1 + ε_high) or (A < 0 and r < 1 - ε_low); dropped tokens still count in the
token-level denominator.

Defaults: ε_low = 1.0, i.e. the weight is clipped to [0, 1 + ε_high] — M2 removed the lower
bound. ε_high is unpublished; 0.28 is our choice (DAPO's clip-higher bound, also the value
common CISPO reimplementations use); tune it as a config field. No KL penalty (M1, M2).
"""

from __future__ import annotations

import torch

from forgerl.rl.common import check_clip_range, masked, prepare, token_denominator, token_metrics
from forgerl.rl.types import LossOutput

CISPO_EPS_LOW = 1.0
CISPO_EPS_HIGH = 0.28


def cispo_loss(
    logp: torch.Tensor,  # [B, T] current policy, requires grad
    old_logp: torch.Tensor,  # [B, T] behaviour policy (recorded)
    advantages: torch.Tensor,  # [B] or [B, T]
    mask: torch.Tensor,  # [B, T] 1 = trainable
    *,
    eps_low: float = CISPO_EPS_LOW,
    eps_high: float = CISPO_EPS_HIGH,
    trust_region_mask: bool = False,
    num_tokens: int | torch.Tensor | None = None,
    num_sequences: int | torch.Tensor | None = None,  # unused: CISPO normalises per token
    entropy: torch.Tensor | None = None,  # [B, T], for metrics only
) -> LossOutput:
    """CISPO loss, token-level normalised by `num_tokens` (default: this call's trainable tokens)."""
    check_clip_range(eps_low, eps_high)
    p = prepare(logp, old_logp, advantages, mask)
    ratio = p.log_ratio.detach().exp()  # [B, T]
    weight = ratio.clamp(min=1.0 - eps_low, max=1.0 + eps_high)  # [B, T] ŵ, no grad
    keep = p.trainable  # [B, T]
    if trust_region_mask:
        above = (p.advantages > 0) & (ratio > 1.0 + eps_high)  # [B, T]
        below = (p.advantages < 0) & (ratio < 1.0 - eps_low)  # [B, T]
        keep = keep & ~(above | below)
    objective = masked(weight * p.advantages * p.logp, keep).sum()  # []
    loss = -objective / token_denominator(p.tokens, num_tokens)
    metrics = token_metrics(p, ratio, eps_low=eps_low, eps_high=eps_high, entropy=entropy)
    metrics["trust_region_masked_frac"] = int((p.trainable & ~keep).sum()) / max(p.tokens, 1)
    metrics["loss"] = float(loss.detach())
    return LossOutput(loss=loss, metrics=metrics)
