"""Asynchronous RL training: the same step as `train/loop.py`, fed by the windowed-FIFO scheduler.

    open the run (resume: its checkpoint, plus the rollout ledger's open tickets)
    a stream of group specs (task seed, difficulty) -> scheduler -> windowed batches of groups
    async for batch in scheduler.batches():          # rollouts keep running on the event loop
        samples = build_samples(batch)               # exact recorded ids, group advantages
        optimize in a worker thread                  # the engine keeps decoding meanwhile
        push weights (version + 1), ack the batch in the store, log, checkpoint when due

The ticket is a *group* (`group_size` rollouts of one task), so group-normalised advantages see
whole groups; `batch_size` is `groups_per_step`. The scheduler comes from the config's `[rollout]`
table (`mode = "windowed"`; `run_training` picks this loop or train/loop.py's by that mode). The trainer's step, evaluation, checkpoints and
metrics are `train/`'s own; only the collection differs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

from forgerl.agent.loop import run_episode
from forgerl.agent.tools import close_env
from forgerl.engine.base import SamplingParams
from forgerl.rollout import multiagent
from forgerl.rollout.ledger import StoreLedger
from forgerl.rollout.scheduler import Batch, RolloutScheduler, SchedulerConfig
from forgerl.train.config import TrainConfig
from forgerl.train.interrupt import StopControl, handle_stop_signals
from forgerl.train.loop import TrainResult, rollout_metrics, stop_interrupted
from forgerl.train.rollouts import evaluate, make_task, training_seed
from forgerl.train.run import Run, close_run, finish_run, open_run, save_checkpoint
from forgerl.train.step import build_samples, optimize
from forgerl.types import Trajectory


def group_specs(config: TrainConfig) -> Iterator[dict[str, Any]]:
    """Task k of the run: the seed the synchronous loop would use for (step k // G, group k % G)."""
    for k in itertools.count():
        seed = training_seed(config.seed, k // config.groups_per_step, k % config.groups_per_step)
        yield {"k": k, "seed": seed, "difficulty": config.difficulty[seed % len(config.difficulty)]}


async def rollout_group(run: Run, spec: dict[str, Any]) -> list[Trajectory]:
    """`group_size` concurrent episodes of one task (a failed episode is data: see agent/loop.py).
    On the multi-agent family each episode contributes its coordinator and sub-agent trajectories."""
    cfg = run.config
    base = SamplingParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature, top_p=cfg.top_p)
    if cfg.env == multiagent.FAMILY:
        task = multiagent.generate(spec["seed"], spec["difficulty"])
        episodes = await asyncio.gather(*(
            multiagent.run_multiagent_episode(run.engine, run.fmt, task, max_total_tokens=cfg.max_context,
                                              sampling=dataclasses.replace(base, seed=spec["seed"] * 101 + i))
            for i in range(cfg.group_size)))
        for traj in (t for e in episodes for t in e):
            traj.metadata.update(difficulty=spec["difficulty"], task_index=spec["k"])
            traj.group_id = f"task{spec['k']}"
        return [t for e in episodes for t in e]

    async def one(i: int) -> Trajectory:
        env, task = make_task(cfg.env, spec["seed"], spec["difficulty"])
        traj = Trajectory(group_id=f"task{spec['k']}")
        try:
            traj = await run_episode(run.engine, run.fmt, env, task, max_turns=cfg.max_turns,
                                     sampling=dataclasses.replace(base, seed=spec["seed"] * 101 + i),
                                     max_total_tokens=cfg.max_context, trajectory=traj,
                                     tool_timeout_s=cfg.tool_timeout_s)
        finally:
            await close_env(env, traj)  # never raises: a failed cleanup must not lose the group
        traj.metadata.update(difficulty=spec["difficulty"], task_index=spec["k"])
        return traj

    return list(await asyncio.gather(*(one(i) for i in range(cfg.group_size))))


def scheduler_config(config: TrainConfig) -> SchedulerConfig:
    """The scheduler the config's `[rollout]` table asks for (a ticket is one group, so a batch is
    `groups_per_step` tickets); the default for a `sync` config is the windowed FIFO's defaults."""
    fields = config.rollout.model_dump()
    if fields["mode"] == "sync":
        fields["mode"] = "windowed"
    return SchedulerConfig(batch_size=config.groups_per_step, **fields)


def run_training(config: TrainConfig, *, resume: bool = False,
                 on_step: Callable[[int, dict[str, float]], None] | None = None,
                 control: StopControl | None = None) -> TrainResult:
    """The training loop the config asks for: `rollout.mode = "sync"` is the on-policy loop of
    train/loop.py; windowed, fifo and greedy run asynchronously here (`forgerl train` uses this)."""
    if config.rollout.mode == "sync":
        from forgerl.train.loop import train

        return train(config, resume=resume, on_step=on_step, control=control)
    return run_async_training(config, resume=resume, on_step=on_step, control=control)


def run_async_training(config: TrainConfig, scheduler: SchedulerConfig | None = None, *, resume: bool = False,
                       on_step: Callable[[int, dict[str, float]], None] | None = None,
                       control: StopControl | None = None) -> TrainResult:
    """The asynchronous loop; signals behave as in train/loop.py (finish, or abandon, the step,
    checkpoint, status `interrupted`, TrainingInterrupted with the resume command)."""
    scheduler = scheduler or scheduler_config(config)
    if scheduler.batch_size != config.groups_per_step:
        raise ValueError(f"scheduler.batch_size ({scheduler.batch_size}) must equal groups_per_step "
                         f"({config.groups_per_step}): a batch is one step's groups")
    start = time.perf_counter()
    run = open_run(config, resume=resume, keep_unconsumed=True)  # the ledger offers untrained rollouts again
    if control is not None:
        run.control = control
    run.control.current_step = lambda: run.step + 1
    result = TrainResult(run_dir=str(run.run_dir))
    status = "failed"
    try:
        with handle_stop_signals(run.control):
            try:
                asyncio.run(_train(run, scheduler, result, on_step, resumed=resume))
            except KeyboardInterrupt:  # abandoned: untrained rollouts stay in the ledger for the resume
                status = "interrupted"
                raise stop_interrupted(run, abandoned=True) from None
            if run.control.stop_requested and run.step < run.config.steps:
                status = "interrupted"
                raise stop_interrupted(run, abandoned=False)
        status = "completed"
    finally:
        finish_run(run, status)
        close_run(run)
    result.seconds = time.perf_counter() - start
    return result


async def _train(run: Run, sched_cfg: SchedulerConfig, result: TrainResult,
                 on_step: Callable[[int, dict[str, float]], None] | None, *, resumed: bool = False) -> None:
    cfg = run.config
    if run.step == 0:
        result.eval_rewards.append((0, await evaluate(run)))
        run.log({"eval/reward": result.eval_rewards[0][1]})
    ledger = StoreLedger(run.store, run.run_id, run.run_dir, resumed_at=(run.step, run.version) if resumed else None)
    scheduler = RolloutScheduler(lambda spec: rollout_group(run, spec), group_specs(cfg), sched_cfg,
                                 current_version=lambda: run.version, ledger=ledger)
    async for batch in scheduler.batches(max_batches=max(0, cfg.steps - run.step)):
        if run.control.stop_requested:  # the batch stays unacknowledged: the resume's ledger offers it again
            break
        t0 = time.perf_counter()
        samples = build_samples([g for result in batch.results for g in advantage_groups(result)], cfg)
        metrics = await asyncio.to_thread(optimize, run, samples)  # rollouts continue on this loop
        t1 = time.perf_counter()
        run.control.begin_update()
        run.push_weights()
        run.step += 1
        batch.ack(run.step)
        run.control.end_update()
        metrics.update(_batch_metrics(batch, run, scheduler))
        metrics.update({"time/wait_s": batch.wait_s, "time/train_s": t1 - t0, "time/sync_s": time.perf_counter() - t1})
        new_best = False
        if run.step % cfg.eval_every == 0 or run.step == cfg.steps:
            metrics["eval/reward"] = await evaluate(run)
            result.eval_rewards.append((run.step, metrics["eval/reward"]))
            new_best = run.is_new_best(metrics["eval/reward"])
        run.log(metrics)
        if on_step is not None:
            on_step(run.step, metrics)
        if run.step % cfg.checkpoint_every == 0 or run.step == cfg.steps or new_best:
            save_checkpoint(run)
        if run.control.stop_requested:
            break


def advantage_groups(trajectories: list[Trajectory]) -> list[list[Trajectory]]:
    """One task's trajectories split by agent role (main / coordinator / sub-agents): advantages
    compare an agent only with agents in the same role (multiagent.episode_groups)."""
    roles: dict[str, list[Trajectory]] = {}
    for traj in trajectories:
        roles.setdefault("sub" if traj.agent_id.startswith("sub-") else traj.agent_id, []).append(traj)
    return list(roles.values())


def _batch_metrics(batch: Batch, run: Run, scheduler: RolloutScheduler) -> dict[str, float]:
    trajectories = [t for group in batch.results for t in group]
    out = rollout_metrics(trajectories, run.version)
    out.update({
        "scheduler/staleness_mean": sum(batch.staleness) / max(1, len(batch.staleness)),
        "scheduler/staleness_max": float(max(batch.staleness, default=0)),
        "scheduler/stale_requeued": float(scheduler.counts["stale_requeued"]),
        "scheduler/stale_dropped": float(scheduler.counts["stale_dropped"]),
        "scheduler/failed_attempts": float(scheduler.stats["failed_attempts"]),
    })
    return out


__all__ = ["advantage_groups", "group_specs", "rollout_group", "run_async_training", "run_training",
           "scheduler_config"]
