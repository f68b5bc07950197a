"""Plumbing every loss shares: the tensor layout, input checks, masking, normalisers, metrics.

Layout (one for all losses): a micro-batch of B completions padded to T tokens.

    logp       [B, T]  current policy's logprob of each sampled token (requires grad)
    old_logp   [B, T]  behaviour policy's recorded logprob of the same token (LLMCall.completion_logprobs)
    advantages [B]     one per completion, broadcast over its tokens, or
               [B, T]  one per token
    mask       [B, T]  1 (or True) = trainable token, 0 = padding / tool output / scaffolding

Padded rather than packed because prefix-tree batching splits its packed forward pass back into
per-sample rows before the loss (M2_NOTES §4), and a padded row is what every per-sequence
normaliser needs. Positions with mask 0 may hold anything, NaN and -inf included (padding is
untrusted): they are replaced by constants before any arithmetic, so they can neither change the
loss nor put NaN into a gradient.

Normalisation across micro-batches: a loss normalised inside each micro-batch gives the wrong
gradient when micro-batches hold different numbers of tokens. So every loss takes the totals of
the whole optimizer batch (`num_tokens`, `num_sequences`, from `BatchCounts.of`); with them the
micro-batch losses add up exactly to the full-batch loss and their gradients accumulate to the
full-batch gradient.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from forgerl.rl.types import LossInputError


@dataclass(frozen=True)
class BatchCounts:
    """Trainable tokens and non-empty sequences of a whole optimizer batch."""

    tokens: int
    sequences: int

    @classmethod
    def of(cls, masks: torch.Tensor | Iterable[torch.Tensor]) -> BatchCounts:
        """Counts over one [B, T] mask or over the masks of all micro-batches of a step."""
        masks = [masks] if isinstance(masks, torch.Tensor) else list(masks)
        tokens = sequences = 0
        for mask in masks:
            trainable = _trainable(mask, "mask")
            if trainable.dim() != 2:
                raise LossInputError(f"mask must be [B, T], got shape {tuple(mask.shape)}")
            tokens += int(trainable.sum())
            sequences += int(trainable.any(dim=-1).sum())
        return cls(tokens=tokens, sequences=sequences)


@dataclass
class Prepared:
    """Checked, masked inputs in the compute dtype (at least float32). Masked slots are 0."""

    logp: torch.Tensor  # [B, T] grad flows to the caller's logp at trainable slots only
    old_logp: torch.Tensor  # [B, T] detached
    advantages: torch.Tensor  # [B, T] detached, broadcast from [B] if needed
    trainable: torch.Tensor  # [B, T] bool
    seq_len: torch.Tensor  # [B] trainable tokens per row (compute dtype)
    tokens: int  # trainable tokens in this micro-batch
    sequences: int  # rows with at least one trainable token

    @property
    def log_ratio(self) -> torch.Tensor:  # [B, T] log π_θ - log π_old, 0 at masked slots
        return self.logp - self.old_logp


def prepare(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
) -> Prepared:
    """Check shapes and values, broadcast advantages, and neutralise masked slots."""
    if not isinstance(logp, torch.Tensor) or logp.dim() != 2:
        shape = tuple(logp.shape) if isinstance(logp, torch.Tensor) else type(logp).__name__
        raise LossInputError(f"logp must be a [B, T] tensor of padded completions, got {shape}")
    if not logp.is_floating_point():
        raise LossInputError(f"logp must be floating point, got {logp.dtype}")
    shape = tuple(logp.shape)
    for name, t in (("old_logp", old_logp), ("mask", mask)):
        if not isinstance(t, torch.Tensor):
            raise LossInputError(f"{name} must be a [B, T] tensor like logp, got {type(t).__name__}")
        if tuple(t.shape) != shape:
            raise LossInputError(f"{name} must have logp's shape {shape}, got {tuple(t.shape)}")
    trainable = _trainable(mask, "mask")
    adv = _broadcast_advantages(advantages, shape)
    dtype = torch.promote_types(logp.dtype, torch.float32)
    prepared_logp = torch.where(trainable, logp.to(dtype), 0.0)
    prepared_old = torch.where(trainable, old_logp.detach().to(dtype), 0.0)
    prepared_adv = torch.where(trainable, adv.detach().to(dtype), 0.0)
    for name, t in (("logp", prepared_logp), ("old_logp", prepared_old), ("advantages", prepared_adv)):
        require_finite(t.detach(), name, trainable)
    return Prepared(
        logp=prepared_logp,
        old_logp=prepared_old,
        advantages=prepared_adv,
        trainable=trainable,
        seq_len=trainable.sum(dim=-1).to(dtype),
        tokens=int(trainable.sum()),
        sequences=int(trainable.any(dim=-1).sum()),
    )


def masked(x: torch.Tensor, trainable: torch.Tensor) -> torch.Tensor:
    """x where trainable, else an exact 0 (and a 0 gradient)."""
    return torch.where(trainable, x, 0.0)


def token_denominator(local_tokens: int, num_tokens: int | torch.Tensor | None) -> int:
    """Σ_i |o_i| over the whole batch; 1 when it is empty so an empty batch gives loss 0."""
    return _denominator(local_tokens, num_tokens, "num_tokens", "trainable tokens")


def sequence_denominator(local_sequences: int, num_sequences: int | torch.Tensor | None) -> int:
    """Number of non-empty completions in the whole batch (the G of 1/G Σ_i); at least 1."""
    return _denominator(local_sequences, num_sequences, "num_sequences", "non-empty sequences")


def sequence_means(per_token: torch.Tensor, p: Prepared) -> torch.Tensor:
    """[B, T] → [B]: mean over each row's trainable tokens; 0 for an empty row."""
    return masked(per_token, p.trainable).sum(dim=-1) / p.seq_len.clamp(min=1.0)


def check_clip_range(eps_low: float, eps_high: float, *, max_low: float = 1.0) -> None:
    """Clip ranges: ratio bounds are [1 - eps_low, 1 + eps_high]; eps_low ≤ 1 keeps the lower
    bound ≥ 0 (1.0 means no lower bound, since a ratio is never negative)."""
    if not 0.0 <= eps_low <= max_low:
        raise LossInputError(f"eps_low must be in [0, {max_low}], got {eps_low}")
    if eps_high < 0.0:
        raise LossInputError(f"eps_high must be >= 0, got {eps_high}")


def token_metrics(
    p: Prepared,
    ratio: torch.Tensor,
    *,
    eps_low: float,
    eps_high: float,
    entropy: torch.Tensor | None,
) -> dict[str, float]:
    """Means over this call's trainable tokens of the importance ratio r = π_θ/π_old, the
    fraction of tokens below 1 - eps_low / above 1 + eps_high, the k3 estimate of
    KL(π_old ‖ π_θ) = E_old[(r - 1) - log r] (≥ 0 per token; Schulman's low-variance estimator),
    the mean negative logprob of the sampled tokens (an entropy estimate that needs no full
    distribution), and the mean of `entropy` [B, T] when the trainer computed it."""
    with torch.no_grad():
        n = max(p.tokens, 1)
        ratio = ratio.detach()
        log_ratio = p.log_ratio.detach()
        metrics = {
            "is_ratio_mean": float(masked(ratio, p.trainable).sum() / n),
            "clip_frac_low": int(((ratio < 1.0 - eps_low) & p.trainable).sum()) / n,
            "clip_frac_high": int(((ratio > 1.0 + eps_high) & p.trainable).sum()) / n,
            "approx_kl_k3": float(masked(ratio - 1.0 - log_ratio, p.trainable).sum() / n),
            "neg_logp": float(-p.logp.detach().sum() / n),
            "tokens": float(p.tokens),
            "sequences": float(p.sequences),
        }
        if entropy is not None:
            if tuple(entropy.shape) != tuple(p.trainable.shape):
                raise LossInputError(
                    f"entropy must be [B, T] like logp {tuple(p.trainable.shape)}, got {tuple(entropy.shape)}"
                )
            metrics["entropy"] = float(masked(entropy.detach().to(p.logp.dtype), p.trainable).sum() / n)
        return metrics


def require_finite(t: torch.Tensor, name: str, where: torch.Tensor | None = None) -> None:
    """Raise if `t` has NaN/inf (only at `where`, when given), naming the first bad index."""
    bad = ~torch.isfinite(t)
    if where is not None:
        bad = bad & where
    if bool(bad.any()):
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise LossInputError(
            f"{name} has {int(bad.sum())} non-finite value(s) at trainable positions (first at "
            f"index {first}); mask those tokens out or drop the sample (a NaN logprob or reward "
            "is an infrastructure failure, not training data)"
        )


def _trainable(mask: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise LossInputError(f"{name} must be a tensor, got {type(mask).__name__}")
    if mask.dtype == torch.bool:
        return mask
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise LossInputError(
            f"{name} must hold only 0/1 (or bools): 1 = trainable token, 0 = not; got other values. "
            "Per-token weights belong in the advantages, not the mask"
        )
    return mask != 0


def _broadcast_advantages(advantages: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(advantages, torch.Tensor):
        raise LossInputError(f"advantages must be a tensor, got {type(advantages).__name__}")
    if tuple(advantages.shape) == shape:
        return advantages
    if advantages.dim() == 1 and advantages.shape[0] == shape[0]:
        return advantages[:, None].expand(shape)
    raise LossInputError(
        f"advantages must be [B] = [{shape[0]}] (one per completion) or [B, T] = {list(shape)} "
        f"(one per token), got {list(advantages.shape)}"
    )


def _denominator(local: int, total: int | torch.Tensor | None, name: str, what: str) -> int:
    if total is None:
        return max(local, 1)
    total = int(total)
    if total < local:
        raise LossInputError(
            f"{name}={total} is smaller than the {local} {what} in this micro-batch; pass the total "
            "over the whole optimizer batch (BatchCounts.of(all micro-batch masks))"
        )
    return max(total, 1)
