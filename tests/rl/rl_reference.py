"""Naive reference implementations of the losses: the paper formulas written as plain Python
loops over tokens, with each token's terms built from torch scalars so autograd gives the
reference gradient. Clipping and min() are Python branches on float values, so the only thing
shared with the implementations under test is torch's scalar exp/log. Slow; for tiny batches.

Inputs: logp (leaf, requires grad), old_logp, mask as [B, T] tensors; adv as [B] or [B, T];
masked positions must hold finite values here (the implementations are tested separately for
garbage there).
"""

from __future__ import annotations

import math

import torch


def adv_at(adv: torch.Tensor, b: int, t: int) -> float:
    return float(adv[b]) if adv.dim() == 1 else float(adv[b, t])


def trainable(mask: torch.Tensor, b: int, t: int) -> bool:
    return bool(mask[b, t] != 0)


def val(x) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


def clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def pessimistic(r: torch.Tensor, a: float, lo: float, hi: float) -> torch.Tensor:
    """min(r·a, clip(r)·a), with the clipped branch a constant (its gradient is zero)."""
    unclipped = r * a
    rv = val(r)
    clipped = r * a if lo <= rv <= hi else torch.tensor(clip(rv, lo, hi) * a, dtype=r.dtype)
    return unclipped if val(unclipped) <= val(clipped) else clipped


def zero(logp: torch.Tensor) -> torch.Tensor:
    return torch.zeros((), dtype=logp.dtype)


def cispo(logp, old, adv, mask, *, eps_low=1.0, eps_high=0.28, trust_region_mask=False, num_tokens=None):
    B, T = logp.shape
    total, n = zero(logp), 0
    for b in range(B):
        for t in range(T):
            if not trainable(mask, b, t):
                continue
            n += 1
            a = adv_at(adv, b, t)
            r = math.exp(float(logp.detach()[b, t]) - float(old[b, t]))
            if trust_region_mask and ((a > 0 and r > 1 + eps_high) or (a < 0 and r < 1 - eps_low)):
                continue
            total = total + clip(r, 1 - eps_low, 1 + eps_high) * a * logp[b, t]
    return -total / max(n if num_tokens is None else num_tokens, 1)


def dapo(logp, old, adv, mask, *, eps_low=0.2, eps_high=0.28, num_tokens=None):
    B, T = logp.shape
    total, n = zero(logp), 0
    for b in range(B):
        for t in range(T):
            if trainable(mask, b, t):
                n += 1
                r = torch.exp(logp[b, t] - float(old[b, t]))
                total = total + pessimistic(r, adv_at(adv, b, t), 1 - eps_low, 1 + eps_high)
    return -total / max(n if num_tokens is None else num_tokens, 1)


def ppo(logp, old, adv, mask, *, eps_low=0.2, eps_high=0.2, kl_coef=0.0, ref_logp=None, num_sequences=None):
    B, T = logp.shape
    total, g = zero(logp), 0
    for b in range(B):
        row, n = zero(logp), 0
        for t in range(T):
            if trainable(mask, b, t):
                n += 1
                r = torch.exp(logp[b, t] - float(old[b, t]))
                term = pessimistic(r, adv_at(adv, b, t), 1 - eps_low, 1 + eps_high)
                if kl_coef:
                    d = float(ref_logp[b, t]) - logp[b, t]
                    term = term - kl_coef * (torch.exp(d) - d - 1)
                row = row + term
        if n:
            g += 1
            total = total + row / n
    return -total / max(g if num_sequences is None else num_sequences, 1)


def gspo(logp, old, adv, mask, *, eps_low=3e-4, eps_high=4e-4, num_sequences=None):
    """Sequence form for [B] advantages; the paper's GSPO-token form for [B, T]."""
    B, T = logp.shape
    total, g = zero(logp), 0
    lo, hi = 1 - eps_low, 1 + eps_high
    for b in range(B):
        idx = [t for t in range(T) if trainable(mask, b, t)]
        if not idx:
            continue
        g += 1
        log_s = sum((logp[b, t] - float(old[b, t]) for t in idx), zero(logp)) / len(idx)
        s = torch.exp(log_s)
        if adv.dim() == 1:
            total = total + pessimistic(s, float(adv[b]), lo, hi)
        else:
            row = zero(logp)
            for t in idx:
                s_t = val(s) * torch.exp(logp[b, t] - float(logp.detach()[b, t]))
                row = row + pessimistic(s_t, float(adv[b, t]), lo, hi)
            total = total + row / len(idx)
    return -total / max(g if num_sequences is None else num_sequences, 1)


REFERENCES = {"cispo": cispo, "ppo": ppo, "grpo": ppo, "dapo": dapo, "gspo": gspo}


def value_and_grad(loss_fn, logp: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss value, d loss / d logp); a zero gradient when the loss does not depend on logp."""
    loss = loss_fn(logp, *args, **kwargs)
    loss = getattr(loss, "loss", loss)
    (grad,) = torch.autograd.grad(loss, logp, allow_unused=True)
    return loss.detach(), torch.zeros_like(logp) if grad is None else grad
