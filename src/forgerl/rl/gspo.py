"""GSPO: group sequence policy optimisation — one importance ratio per sequence.

Paper: GSPO (Zheng et al., Qwen team, arXiv 2507.18071):

    s_i  = (π_θ(o_i) / π_old(o_i))^(1/|o_i|) = exp(1/|o_i| · Σ_t (log π_θ(o_it) - log π_old(o_it)))
    J(θ) = 1/G · Σ_i min(s_i · A_i, clip(s_i, 1 - ε_low, 1 + ε_high) · A_i)

with the paper's small ranges ε_low = 3e-4, ε_high = 4e-4 (a length-normalised sequence ratio
moves far less than a token ratio). Computed in the paper's GSPO-token form,
s_it = sg(s_i) · π_θ(o_it) / sg(π_θ(o_it)), averaged over each sequence's tokens: equal to the
sequence form in value and gradient when A is per sequence, and it also accepts per-token
advantages [B, T]. G counts non-empty completions of the whole batch (`num_sequences`).
"""

from __future__ import annotations

import torch

from forgerl.rl.common import (
    check_clip_range,
    masked,
    prepare,
    sequence_denominator,
    sequence_means,
    token_metrics,
)
from forgerl.rl.types import LossOutput

GSPO_EPS_LOW = 3e-4
GSPO_EPS_HIGH = 4e-4


def gspo_loss(
    logp: torch.Tensor,  # [B, T] current policy, requires grad
    old_logp: torch.Tensor,  # [B, T] behaviour policy (recorded)
    advantages: torch.Tensor,  # [B] (GSPO) or [B, T] (GSPO-token)
    mask: torch.Tensor,  # [B, T] 1 = trainable
    *,
    eps_low: float = GSPO_EPS_LOW,
    eps_high: float = GSPO_EPS_HIGH,
    num_tokens: int | torch.Tensor | None = None,  # unused: normalised per sequence
    num_sequences: int | torch.Tensor | None = None,
    entropy: torch.Tensor | None = None,  # [B, T], for metrics only
) -> LossOutput:
    """GSPO loss with a sequence-level ratio, mean over `num_sequences` completions."""
    check_clip_range(eps_low, eps_high)
    p = prepare(logp, old_logp, advantages, mask)
    seq_ratio = sequence_means(p.log_ratio, p).exp()  # [B] s_i, grad
    token_ratio = seq_ratio.detach()[:, None] * (p.logp - p.logp.detach()).exp()  # [B, T] s_it, value s_i
    clipped = token_ratio.clamp(min=1.0 - eps_low, max=1.0 + eps_high)  # [B, T]
    per_token = torch.minimum(token_ratio * p.advantages, clipped * p.advantages)  # [B, T]
    loss = -sequence_means(per_token, p).sum() / sequence_denominator(p.sequences, num_sequences)
    metrics = token_metrics(p, p.log_ratio.detach().exp(), eps_low=eps_low, eps_high=eps_high, entropy=entropy)
    with torch.no_grad():  # the clip acts on sequences: report it per non-empty sequence
        nonempty = p.trainable.any(dim=-1)  # [B]
        n = max(p.sequences, 1)
        s = seq_ratio.detach()
        metrics["seq_ratio_mean"] = float(masked(s, nonempty).sum() / n)
        metrics["clip_frac_low"] = int(((s < 1.0 - eps_low) & nonempty).sum()) / n
        metrics["clip_frac_high"] = int(((s > 1.0 + eps_high) & nonempty).sum()) / n
    metrics["loss"] = float(loss.detach())
    return LossOutput(loss=loss, metrics=metrics)
