"""The supervised optimiser shared by SFT and pre-training: AdamW, linear warm-up, cosine decay to 0.

Why one helper: `forgerl sft` (train/sft.py) and `forgerl pretrain` (forgerl/pretrain/) train the same
tiny MoE with the same recipe (betas (0.9, 0.95) as M1, no weight decay, gradient clipping at 1.0 by
the caller); keeping the schedule in one place keeps the two stages comparable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """The learning-rate factor at optimizer step `step` (0-based): (step + 1) / warmup during the
    warm-up, times a cosine from 1 at step 0 to 0 at step `total`."""
    ramp = min(1.0, (step + 1) / max(1, warmup))
    return ramp * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total))))


def adamw_warmup_cosine(params: Iterable[torch.nn.Parameter], *, lr: float, warmup: int, total: int
                        ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (betas (0.9, 0.95), no weight decay) and its `warmup_cosine` scheduler; call the
    scheduler's `step()` after each optimizer step."""
    optim = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: warmup_cosine(s, warmup, total))
    return optim, sched
