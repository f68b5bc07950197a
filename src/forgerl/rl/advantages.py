"""Advantages: group-normalised outcome rewards (GRPO) and per-step returns (M2's agent setting).

Two settings (M2_NOTES §1):

* One completion per task (reasoning): `group_normalized` — A_i = (R_i - mean_j R_j) / std_j R_j
  over the G samples of one prompt (GRPO, DeepSeekMath arXiv 2402.03300; CISPO uses the same).
* Agents (M2, arXiv 2605.26494 §6.1.4): every LLM call of a trajectory is its own training sample,
  with per-step reward r_t = α·process_t + β·speed_t + outcome·[t = last] (`step_rewards`) and
  advantage = reward-to-go minus a baseline that is constant along the trajectory
  (`step_advantages`).

Pure functions of lists and tensors; results are float64 tensors (cast when you build the batch).
Rewards come from verifiers and reward models and are untrusted: a NaN or inf is refused with
an error (an infrastructure failure must be kept out of the group, not turned into a number).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Literal

import torch

from forgerl.rl.types import LossInputError

Baseline = Literal["group_mean", "leave_one_out", "trajectory_mean"]

DEFAULT_PROCESS_WEIGHT = 1.0  # α: M2's value is unpublished; process rewards are already scaled penalties
DEFAULT_SPEED_WEIGHT = 0.0  # β: unpublished; off until a task family calibrates its time baseline


def group_normalized(
    rewards: Sequence[float] | torch.Tensor,  # [B]
    group_ids: Sequence[Hashable] | torch.Tensor | None = None,  # [B]; None = one group
    *,
    eps: float = 1e-6,
    scale_by_std: bool = True,
) -> torch.Tensor:  # [B] float64
    """GRPO advantages: each reward minus its group's mean, divided by the group's std + eps.

    std is the population std (divide by G). A group whose rewards are all equal — including a
    group of one — gets advantages of exactly 0 (it carries no signal), never NaN or a 0/eps
    blow-up of rounding noise. `scale_by_std=False` only centres (Dr. GRPO, arXiv 2503.20783).
    """
    r = _rewards_tensor(rewards, "rewards")
    ids = _group_index(group_ids, len(r))
    out = torch.zeros_like(r)
    for g in ids.unique():
        members = ids == g
        group = r[members]
        if bool(group.max() == group.min()):
            continue  # all equal: leave exact zeros
        centred = group - group.mean()
        out[members] = centred / (group.std(unbiased=False) + eps) if scale_by_std else centred
    return out


def reward_to_go(step_rewards: Sequence[float] | torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """G_t = Σ_{k ≥ t} γ^(k-t) · r_k for one trajectory: [T] → [T] float64 (empty → empty)."""
    if not 0.0 <= gamma <= 1.0:
        raise LossInputError(f"gamma must be in [0, 1], got {gamma}")
    r = _rewards_tensor(step_rewards, "step_rewards")
    returns = torch.empty_like(r)
    running = 0.0
    for t in range(len(r) - 1, -1, -1):
        running = float(r[t]) + gamma * running
        returns[t] = running
    return returns


def step_advantages(
    group: Sequence[Sequence[float] | torch.Tensor],  # per trajectory of one task: step rewards [T_i]
    *,
    gamma: float = 1.0,
    baseline: Baseline = "group_mean",
) -> list[torch.Tensor]:  # per trajectory: advantages [T_i], one per LLM call
    """Per-step advantage A_it = G_it - b_i: reward-to-go minus a baseline constant along
    trajectory i (M2: "reward-to-go minus a per-trajectory baseline"; its exact baseline is
    unpublished). A trajectory's return is G_i0 (0 for a trajectory with no calls).

    * "group_mean" (default): b = mean_j G_j0 over the group — GRPO's centring applied to
      returns; the same b for every trajectory of the group.
    * "leave_one_out": b_i = mean_{j≠i} G_j0 — a per-trajectory baseline independent of
      trajectory i's own actions (RLOO, arXiv 2402.14740), so the estimate stays unbiased.
      Needs ≥ 2 trajectories.
    * "trajectory_mean": b_i = mean_t G_it of trajectory i itself. Caution: it cancels any reward
      that every step of the trajectory shares — with γ = 1 the outcome reward drops out
      entirely — leaving only credit *within* the trajectory (process and speed rewards).
    """
    if baseline not in ("group_mean", "leave_one_out", "trajectory_mean"):
        raise LossInputError(
            f"unknown baseline {baseline!r}; use 'group_mean', 'leave_one_out' or 'trajectory_mean'"
        )
    returns = [reward_to_go(rewards, gamma) for rewards in group]
    totals = [float(g[0]) if len(g) else 0.0 for g in returns]
    if baseline == "leave_one_out" and len(group) < 2:
        raise LossInputError(
            "baseline='leave_one_out' needs at least 2 trajectories per group, got "
            f"{len(group)}; sample more per task or use baseline='group_mean'"
        )
    advantages = []
    for i, g in enumerate(returns):
        if baseline == "group_mean":
            b = math.fsum(totals) / len(totals)
        elif baseline == "leave_one_out":
            b = (math.fsum(totals) - totals[i]) / (len(totals) - 1)
        else:
            b = float(g.mean()) if len(g) else 0.0
        advantages.append(g - b)
    return advantages


def step_rewards(
    outcome: float,
    process: Sequence[float],  # [T] one process reward (usually a penalty ≤ 0) per LLM call
    speed: float | Sequence[float] = 0.0,  # [T] per call, or one number for the trajectory
    *,
    alpha: float = DEFAULT_PROCESS_WEIGHT,
    beta: float = DEFAULT_SPEED_WEIGHT,
) -> list[float]:  # [T]
    """M2's per-step reward r_t = α·process_t + β·speed_t + outcome·[t = T-1].

    The outcome (the verifier's reward) lands on the last call; with γ = 1 every earlier call
    sees it through its reward-to-go. A scalar `speed` is a trajectory-level reward and lands on
    the last call too (adding it to every call would count it T times in the first return).
    A trajectory with no calls has no steps: returns [].
    """
    values = [outcome, alpha, beta, *process]
    speeds = [float(speed)] if isinstance(speed, (int, float)) else [float(s) for s in speed]
    if not all(math.isfinite(float(v)) for v in [*values, *speeds]):
        raise LossInputError(
            "outcome, process, speed, alpha and beta must be finite numbers; a NaN or inf reward "
            "is an infrastructure failure: mark the trajectory FAILED instead"
        )
    n = len(process)
    per_call_speed = [0.0] * n
    if isinstance(speed, (int, float)):
        if n:
            per_call_speed[-1] = float(speed)
    elif len(speeds) != n:
        raise LossInputError(
            f"speed has {len(speeds)} values but process has {n}: give one per call, or one number"
        )
    else:
        per_call_speed = speeds
    rewards = [alpha * float(p) + beta * s for p, s in zip(process, per_call_speed, strict=True)]
    if rewards:
        rewards[-1] += float(outcome)
    return rewards


def speed_reward(elapsed_s: float, baseline_s: float) -> float:
    """A decreasing function of completion time relative to a baseline (M2's speed reward,
    whose form is unpublished): (baseline - elapsed) / baseline clipped to [-1, 1], so 0 at the
    baseline, up to +1 for instant and -1 at twice the baseline or slower. Parallel tool calls
    finish sooner and so earn it."""
    if not (math.isfinite(baseline_s) and baseline_s > 0):
        raise LossInputError(f"baseline_s must be a positive number of seconds, got {baseline_s}")
    if not (math.isfinite(elapsed_s) and elapsed_s >= 0):
        raise LossInputError(f"elapsed_s must be a non-negative number of seconds, got {elapsed_s}")
    return max(-1.0, min(1.0, (baseline_s - elapsed_s) / baseline_s))


def _rewards_tensor(rewards: Sequence[float] | torch.Tensor, name: str) -> torch.Tensor:
    try:
        r = torch.as_tensor(rewards.detach() if isinstance(rewards, torch.Tensor) else rewards, dtype=torch.float64)
    except (TypeError, ValueError) as e:
        raise LossInputError(f"{name} must be a one-dimensional sequence of numbers: {e}") from None
    if r.dim() != 1:
        raise LossInputError(f"{name} must be one-dimensional, got shape {tuple(r.shape)}")
    bad = ~torch.isfinite(r)
    if bool(bad.any()):
        raise LossInputError(
            f"{name} has non-finite value(s) at index {bad.nonzero().flatten().tolist()}; a NaN or "
            "inf reward is an infrastructure failure: mark the trajectory FAILED and leave it out"
        )
    return r


def _group_index(group_ids: Sequence[Hashable] | torch.Tensor | None, n: int) -> torch.Tensor:
    if group_ids is None:
        return torch.zeros(n, dtype=torch.long)
    ids = group_ids.tolist() if isinstance(group_ids, torch.Tensor) else list(group_ids)
    if len(ids) != n:
        raise LossInputError(f"group_ids has {len(ids)} entries but rewards has {n}: give one per reward")
    index: dict[Hashable, int] = {}
    return torch.tensor([index.setdefault(g, len(index)) for g in ids], dtype=torch.long)
