"""What every loss returns, the one call signature they share, and the input error they raise.

One signature for all losses so the trainer (and `forgerl bench losses`) can swap them by name:
the algorithm's own hyperparameters (clip ranges, KL coefficient, ...) are keyword arguments
with the paper's defaults, and everything else is the same for every loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


class LossInputError(ValueError):
    """Tensors handed to a loss or an advantage function that cannot be right (shape, dtype,
    mask values, non-finite numbers where they would be trained on). The message says which
    tensor, what was wrong and what to do."""


@dataclass
class LossOutput:
    """A scalar loss to call `.backward()` on, and metrics for logging.

    `metrics` are plain floats about *this call's* trainable tokens (means over them); the
    `tokens` and `sequences` entries say how many there were, so a trainer that accumulates
    micro-batches can weight the means when it merges them.
    """

    loss: torch.Tensor  # [] scalar, differentiable w.r.t. logp
    metrics: dict[str, float] = field(default_factory=dict)


class LossFn(Protocol):
    """The shared call signature (layout documented in `forgerl.rl.common`).

    logp, old_logp, mask: [B, T]; advantages: [B] or [B, T]. `num_tokens` / `num_sequences`
    are the totals over the *whole* optimizer batch when it is split into micro-batches (see
    `BatchCounts`); token-level losses use the first, sequence-level ones the second, and each
    accepts both so a trainer can pass both to any loss. Each loss adds its own hyperparameters
    (eps_low, eps_high, ...) as keyword arguments with its paper's defaults.
    """

    def __call__(
        self,
        logp: torch.Tensor,
        old_logp: torch.Tensor,
        advantages: torch.Tensor,
        mask: torch.Tensor,
        *,
        num_tokens: int | torch.Tensor | None = None,
        num_sequences: int | torch.Tensor | None = None,
        entropy: torch.Tensor | None = None,
    ) -> LossOutput: ...
