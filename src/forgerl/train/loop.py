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
from forgerl.train.interrupt import StopControl, TrainingInterrupted, handle_stop_signals
from forgerl.train.progress import step_progress
from forgerl.train.rollouts import collect_groups, evaluate
from forgerl.train.run import Run, close_run, finish_run, open_run, save_checkpoint, save_checkpoint_if_new
from forgerl.train.step import build_samples, optimize
from forgerl.types import Trajectory


@dataclass
class TrainResult:
    run_dir: str
    eval_rewards: list[tuple[int, float]] = field(default_factory=list)  # (step, mean held-out reward)
    seconds: float = 0.0


def train(config: TrainConfig, *, resume: bool = False, on_step: Callable[[int, dict[str, float]], None] | None = None,
          control: StopControl | None = None) -> TrainResult:
    """Run (or resume) the synchronous loop. SIGINT/SIGTERM: the first finishes the step, the
    second abandons it; either way the run checkpoints its last completed step, records status
    `interrupted` and raises TrainingInterrupted (its message is the resume command)."""
    start = time.perf_counter()
    run = open_run(config, resume=resume, keep_unconsumed=True)  # untrained rollouts: reused or superseded below
    if control is not None:
        run.control = control
    config = run.config
    result = TrainResult(run_dir=str(run.run_dir))
    run.control.current_step = lambda: run.step + 1
    status = "failed"
    try:
        with handle_stop_signals(run.control):
            try:
                _train_steps(run, result, on_step)
            except KeyboardInterrupt:
                status = "interrupted"
                raise stop_interrupted(run, abandoned=True) from None
            if run.control.stop_requested and run.step < config.steps:
                status = "interrupted"
                raise stop_interrupted(run, abandoned=False)
        status = "completed"
    finally:
        finish_run(run, status)
        close_run(run)
    result.seconds = time.perf_counter() - start
    return result


def _train_steps(run: Run, result: TrainResult, on_step: Callable[[int, dict[str, float]], None] | None) -> None:
    config = run.config
    reused = take_reusable_rollouts(run)
    if run.step == 0:  # the starting point, logged as step 0
        result.eval_rewards.append((0, _evaluate(run)))
        run.log({"eval/reward": result.eval_rewards[0][1]})
    while run.step < config.steps and not run.control.stop_requested:
        t0 = time.perf_counter()
        with step_progress(f"step {run.step + 1} rollouts", config.groups_per_step * config.group_size) as advance:
            fresh = asyncio.run(collect_groups(run, skip=set(reused), on_episode=advance, done=sum(map(len, reused.values()))))
        rm_metrics = apply_reward_model(fresh, run.reward_model, config.reward_model)  # {} when off
        run.store.add_trajectories([t for g in fresh for t in g], run.run_id)
        groups = _in_group_order(reused, fresh, config.groups_per_step)
        reused = {}
        trajectories = [t for g in groups for t in g]
        t1 = time.perf_counter()
        samples = build_samples(groups, config)
        metrics = optimize(run, samples)  # calls run.control.begin_update() before changing the weights
        t2 = time.perf_counter()
        run.control.begin_update()  # no-op when optimize already began it (a stub optimize in tests)
        run.push_weights()
        run.step += 1
        run.store.mark_consumed([t.id for t in trajectories], run.step)
        run.control.end_update()
        metrics.update(rollout_metrics(trajectories, run.version))
        metrics.update(rm_metrics)
        metrics.update({"time/rollout_s": t1 - t0, "time/train_s": t2 - t1, "time/sync_s": time.perf_counter() - t2})
        new_best = False
        if run.step % config.eval_every == 0 or run.step == config.steps:
            metrics["eval/reward"] = _evaluate(run)
            result.eval_rewards.append((run.step, metrics["eval/reward"]))
            new_best = run.is_new_best(metrics["eval/reward"])
        run.log(metrics)
        if on_step is not None:
            on_step(run.step, metrics)
        if run.step % config.checkpoint_every == 0 or run.step == config.steps or new_best:
            save_checkpoint(run)


def stop_interrupted(run: Run, *, abandoned: bool) -> TrainingInterrupted:
    """Checkpoint the last completed step (unless the weights are mid-update, which an abandon
    never leaves them in, or it is saved already) and say how to resume."""
    checkpointed = False
    if not run.control.updating:
        checkpointed = save_checkpoint_if_new(run) or run.checkpointed_step == run.step
    return TrainingInterrupted(run.run_dir, run.step if checkpointed else (run.checkpointed_step or 0),
                               abandoned=abandoned, checkpointed=checkpointed)


def take_reusable_rollouts(run: Run) -> dict[int, list[Trajectory]]:
    """Stored rollouts not yet trained on: whole groups of the step about to run, sampled by the
    policy version the run resumed at, are reused (group index -> its trajectories); every other
    untrained rollout (an older policy's, a partial group) is superseded, so it is never trained on."""
    config = run.config
    pending = run.store.query(run_id=run.run_id, consumed=False)
    by_group: dict[int, list[Trajectory]] = {}
    prefix = f"step{run.step}-g"
    for traj in pending:
        group_id = traj.group_id or ""
        on_policy = bool(traj.calls) and all(c.policy_version == run.version for c in traj.calls)
        if group_id.startswith(prefix) and group_id[len(prefix):].isdigit() and on_policy:
            by_group.setdefault(int(group_id[len(prefix):]), []).append(traj)
    reusable = {g: trajs for g, trajs in by_group.items() if g < config.groups_per_step and len(trajs) == config.group_size}
    kept = {t.id for trajs in reusable.values() for t in trajs}
    stale = [t.id for t in pending if t.id not in kept]
    if stale:
        run.store.supersede_trajectories(stale)
    return reusable


def _in_group_order(reused: dict[int, list[Trajectory]], fresh: list[list[Trajectory]], groups: int) -> list[list[Trajectory]]:
    fresh_iter = iter(fresh)
    return [reused[g] if g in reused else next(fresh_iter) for g in range(groups)]


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


__all__ = ["TrainResult", "rollout_metrics", "stop_interrupted", "take_reusable_rollouts", "train"]
