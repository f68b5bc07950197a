"""The RL training loop (synchronous on-policy variant; the windowed-FIFO scheduler plugs in later).

    open the run (or resume it from its last checkpoint)
    evaluate on held-out tasks
    for each step:
        collect groups x G rollouts with the engine at the current policy version
        store them (acknowledged before they are trained on)
        advantages -> training samples from the exact recorded token ids
        one optimizer step over token-budgeted micro-batches (loss normalised over the whole batch)
        push the new weights to the engine (policy version + 1)
        metrics -> store, TensorBoard, live display; evaluate / checkpoint when due
    write the report
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from forgerl.review.features import verifier_reward
from forgerl.review.train_hook import apply_reward_model
from forgerl.train.config import TrainConfig
from forgerl.train.rollouts import collect_groups, evaluate
from forgerl.train.run import Run, close_run, open_run, save_checkpoint
from forgerl.train.step import build_samples, optimize
from forgerl.types import Trajectory


@dataclass
class TrainResult:
    run_dir: str
    eval_rewards: list[tuple[int, float]] = field(default_factory=list)  # (step, mean held-out reward)
    seconds: float = 0.0


def train(config: TrainConfig, *, resume: bool = False, on_step: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    start = time.perf_counter()
    run = open_run(config, resume=resume)
    config = run.config
    result = TrainResult(run_dir=str(run.run_dir))
    try:
        if run.step == 0:  # the starting point, logged as step 0
            result.eval_rewards.append((0, _evaluate(run)))
            run.log({"eval/reward": result.eval_rewards[0][1]})
        while run.step < config.steps:
            t0 = time.perf_counter()
            groups = asyncio.run(collect_groups(run))
            rm_metrics = apply_reward_model(groups, run.reward_model, config.reward_model)  # {} when off
            trajectories = [t for g in groups for t in g]
            run.store.add_trajectories(trajectories, run.run_id)
            t1 = time.perf_counter()
            samples = build_samples(groups, config)
            metrics = optimize(run, samples)
            t2 = time.perf_counter()
            run.push_weights()
            run.step += 1
            run.store.mark_consumed([t.id for t in trajectories], run.step)
            metrics.update(rollout_metrics(trajectories, run.version))
            metrics.update(rm_metrics)
            metrics.update({"time/rollout_s": t1 - t0, "time/train_s": t2 - t1, "time/sync_s": time.perf_counter() - t2})
            if run.step % config.eval_every == 0 or run.step == config.steps:
                metrics["eval/reward"] = _evaluate(run)
                result.eval_rewards.append((run.step, metrics["eval/reward"]))
            run.log(metrics)
            if on_step is not None:
                on_step(run.step, metrics)
            if run.step % config.checkpoint_every == 0 or run.step == config.steps:
                save_checkpoint(run)
    finally:
        close_run(run)
    result.seconds = time.perf_counter() - start
    return result


def _evaluate(run: Run) -> float:
    return asyncio.run(evaluate(run))


def rollout_metrics(trajectories: list[Trajectory], version: int) -> dict[str, float]:
    """Reward (overall, per family and difficulty), pass rate, status counts, sizes, staleness."""
    scored = [t for t in trajectories if t.reward is not None]
    out: dict[str, float] = {
        "rollout/reward": _mean([t.reward for t in scored]),
        "rollout/pass_rate": _mean([float(verifier_reward(t) == 1.0) for t in scored]),  # the verifier's, even when blended
        "rollout/failed_frac": _mean([float(t.status.value == "failed") for t in trajectories]),
        "rollout/truncated_frac": _mean([float(t.status.value == "truncated") for t in trajectories]),
        "rollout/calls": _mean([len(t.calls) for t in trajectories]),
        "rollout/completion_tokens": float(sum(t.num_completion_tokens for t in trajectories)),
        "rollout/errors_per_episode": _mean([len(t.errors) for t in trajectories]),
        "rollout/staleness_max": float(max((version - 1 - c.policy_version for t in trajectories for c in t.calls), default=0)),
    }
    for key in ("family", "difficulty"):
        values = sorted({str(t.metadata.get(key)) for t in scored if t.metadata.get(key) is not None})
        for v in values:
            out[f"rollout/reward/{key}={v}"] = _mean([t.reward for t in scored if str(t.metadata.get(key)) == v])
    return out


def _mean(values: list[Any]) -> float:
    values = [float(v) for v in values if v is not None]
    return sum(values) / len(values) if values else 0.0


__all__ = ["TrainResult", "rollout_metrics", "train"]
