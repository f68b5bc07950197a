"""PPO-clip, and GRPO (the same objective fed group-normalised advantages, optional KL).

Papers: PPO (Schulman et al., arXiv 1707.06347) clipped surrogate; GRPO (DeepSeekMath, Shao et
al., arXiv 2402.03300) eq. 3, which averages per sequence, then over the group:

    r_it = π_θ(o_it) / π_old(o_it)
    J(θ) = 1/G · Σ_i 1/|o_i| · Σ_t [ min(r_it · A_it, clip(r_it, 1 - ε, 1 + ε) · A_it) - β · KL_it ]
    KL_it = π_ref/π_θ - log(π_ref/π_θ) - 1      (k3 estimate of KL(π_θ ‖ π_ref), per token)

G counts non-empty completions of the whole batch (`num_sequences`); an empty completion adds
nothing. This per-sequence mean weights a short completion's tokens more than a long one's —
the length bias DAPO and CISPO remove with token-level normalisation; kept here because it is
GRPO's original form. GRPO's group-normalised advantages come from
`forgerl.rl.advantages.group_normalized`. The KL term is off by default (β = 0, and then no
reference policy is needed): M2 uses none.
"""

from __future__ import annotations

import torch

from forgerl.rl.common import (
    Prepared,
    check_clip_range,
    masked,
    prepare,
    require_finite,
    sequence_denominator,
    sequence_means,
    token_metrics,
)
from forgerl.rl.types import LossInputError, LossOutput

PPO_EPS = 0.2


def ppo_loss(
    logp: torch.Tensor,  # [B, T] current policy, requires grad
    old_logp: torch.Tensor,  # [B, T] behaviour policy (recorded)
    advantages: torch.Tensor,  # [B] or [B, T]
    mask: torch.Tensor,  # [B, T] 1 = trainable
    *,
    eps_low: float = PPO_EPS,
    eps_high: float = PPO_EPS,
    kl_coef: float = 0.0,
    ref_logp: torch.Tensor | None = None,  # [B, T] reference policy, needed iff kl_coef > 0
    num_tokens: int | torch.Tensor | None = None,  # unused: normalised per sequence
    num_sequences: int | torch.Tensor | None = None,
    entropy: torch.Tensor | None = None,  # [B, T], for metrics only
) -> LossOutput:
    """PPO-clip / GRPO loss, per-sequence mean then mean over `num_sequences` completions."""
    check_clip_range(eps_low, eps_high)
    if kl_coef < 0:
        raise LossInputError(f"kl_coef must be >= 0, got {kl_coef}")
    if (kl_coef > 0) != (ref_logp is not None):
        raise LossInputError(
            "the KL term needs both kl_coef > 0 and ref_logp [B, T]; got "
            f"kl_coef={kl_coef} and ref_logp={'a tensor' if ref_logp is not None else None}. "
            "Pass both, or neither (skipping ref_logp saves a reference forward pass)"
        )
    p = prepare(logp, old_logp, advantages, mask)
    ratio = p.log_ratio.exp()  # [B, T], grad
    clipped = ratio.clamp(min=1.0 - eps_low, max=1.0 + eps_high)  # [B, T]
    per_token = torch.minimum(ratio * p.advantages, clipped * p.advantages)  # [B, T]
    metrics: dict[str, float] = {}
    if ref_logp is not None:
        ref = _reference_logp(ref_logp, p)  # [B, T]
        kl = (ref - p.logp).exp() - (ref - p.logp) - 1.0  # [B, T] k3, grad
        per_token = per_token - kl_coef * kl
        metrics["kl_ref"] = float(masked(kl.detach(), p.trainable).sum() / max(p.tokens, 1))
    loss = -sequence_means(per_token, p).sum() / sequence_denominator(p.sequences, num_sequences)
    metrics |= token_metrics(p, ratio, eps_low=eps_low, eps_high=eps_high, entropy=entropy)
    metrics["loss"] = float(loss.detach())
    return LossOutput(loss=loss, metrics=metrics)


def _reference_logp(ref_logp: torch.Tensor, p: Prepared) -> torch.Tensor:
    if tuple(ref_logp.shape) != tuple(p.trainable.shape):
        raise LossInputError(
            f"ref_logp must be [B, T] like logp {tuple(p.trainable.shape)}, got {tuple(ref_logp.shape)}"
        )
    ref = masked(ref_logp.detach().to(p.logp.dtype), p.trainable)
    require_finite(ref, "ref_logp", p.trainable)
    return ref


grpo_loss = ppo_loss  # GRPO = this objective + group_normalized advantages (+ optional KL)
