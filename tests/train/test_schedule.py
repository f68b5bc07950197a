"""The shared SFT / pre-training schedule against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from forgerl.train.schedule import adamw_warmup_cosine, warmup_cosine


def test_warmup_then_cosine_to_zero() -> None:
    # warm-up 4 steps of a 10-step run: (s+1)/4 times the cosine at s/10
    assert warmup_cosine(0, 4, 10) == pytest.approx(0.25 * 0.5 * (1 + math.cos(0.0)))
    assert warmup_cosine(1, 4, 10) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 0.1)))
    assert warmup_cosine(3, 4, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.3)))
    assert warmup_cosine(5, 4, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))  # = 0.5
    assert warmup_cosine(10, 4, 10) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(50, 4, 10) == pytest.approx(0.0, abs=1e-12)  # past the end: stays at 0


def test_the_scheduler_sets_the_optimizer_lr() -> None:
    param = torch.nn.Parameter(torch.zeros(3))
    optim, sched = adamw_warmup_cosine([param], lr=1e-2, warmup=2, total=8)
    seen = []
    for _ in range(4):
        seen.append(optim.param_groups[0]["lr"])
        param.grad = torch.ones(3)
        optim.step()
        sched.step()
    assert seen == pytest.approx([1e-2 * warmup_cosine(s, 2, 8) for s in range(4)])
    assert optim.defaults["betas"] == (0.9, 0.95) and optim.defaults["weight_decay"] == 0.0
