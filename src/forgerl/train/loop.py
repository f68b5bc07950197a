"""The RL training loop: one loop for every way rollouts are collected.

    open the run (or resume it from its last checkpoint); evaluate on held-out tasks at step 0
    for each step:
        batch = await source.next_batch()         # groups, stored (reward transforms applied)
        samples from the exact recorded token ids -> one optimizer step (in a worker thread, so a
        source's rollouts keep running on the event loop) -> push the weights (version + 1)
        batch.ack(step)                           # durable: a restart never trains on it again
        metrics -> store and sinks; the run doctor (new warnings -> doctor.jsonl, shown in the table)
        evaluate / checkpoint (due, last, or a new best) when due
    a stop request finishes the step; a second abandons it (train/interrupt.py)

The source (forgerl/rollout/source.py) decides how rollouts are collected: the scheduler in sync,
fifo, windowed or greedy mode, or black-box agents through the gateway. `forgerl.training.run_training`
builds the config's own source (its `[rollout]` scheduler with its reward model) and calls this
loop: train/ imports neither rollout sources nor the review package.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from forgerl.doctor.live import LiveDoctor
from forgerl.envs.rewards import verifier_reward
from forgerl.train.config import TrainConfig, public_config
from forgerl.train.follower import follow
from forgerl.train.interrupt import StopControl, TrainingInterrupted, handle_stop_signals
from forgerl.train.mtp_cotrain import SpecMeter
from forgerl.train.rollouts import evaluate_domain_metrics
from forgerl.train.run import Run, close_run, finish_run, open_run, save_checkpoint, save_checkpoint_if_new
from forgerl.train.sharded import is_follower_rank
from forgerl.train.step import build_samples, optimize
from forgerl.types import Trajectory

if TYPE_CHECKING:
    from forgerl.rollout.source import RolloutSource

OnStep = Callable[[int, dict[str, float]], None]
log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: str
    eval_rewards: list[tuple[int, float]] = field(default_factory=list)  # (step, mean held-out reward)
    seconds: float = 0.0


def train(config: TrainConfig, source: RolloutSource, *, resume: bool = False, on_step: OnStep | None = None,
          control: StopControl | None = None) -> TrainResult:
    """Run (or resume) training on batches from `source`.
    SIGINT/SIGTERM: the first finishes the step, the second abandons it; either way the run
    checkpoints its last completed step, records status `interrupted` and raises
    TrainingInterrupted (its message is the resume command). Under torchrun, ranks other than 0
    hold a shard and follow rank 0's commands instead (train/follower.py)."""
    if is_follower_rank():
        follow(config)
        return TrainResult(run_dir=str(config.run_dir))
    source.check(config)  # a combination the source cannot do is refused before the run exists
    start = time.perf_counter()
    run = open_run(config, resume=resume, keep_unconsumed=True)  # untrained rollouts: the source's to reuse or supersede
    if control is not None:
        run.control = control
    run.control.current_step = lambda: run.step + 1
    result = TrainResult(run_dir=str(run.run_dir))
    status = "failed"
    try:
        with handle_stop_signals(run.control):
            try:
                asyncio.run(_train_steps(run, source, result, on_step, resumed=resume))
            except KeyboardInterrupt:  # abandoned: the batch was not acknowledged, the resume offers it again
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


async def _train_steps(run: Run, source: RolloutSource, result: TrainResult, on_step: OnStep | None, *,
                       resumed: bool) -> None:
    cfg = run.config
    if run.step == 0:  # the starting point, logged as step 0
        reward, by_family = await evaluate_domain_metrics(run)
        result.eval_rewards.append((0, reward))
        run.log({"eval/reward": reward, **by_family})
    await source.start(run, resumed=resumed)
    spec = SpecMeter(run.engine)  # speculative decoding's acceptance per step (built-in engine with MTP heads)
    doctor = open_doctor(run)
    try:
        while run.step < cfg.steps and not run.control.stop_requested:
            batch = await source.next_batch()
            if batch is None or run.control.stop_requested:  # unacknowledged: the resume offers it again
                break
            t0 = time.perf_counter()
            # the trainer's threads/cores in its worker thread (forgerl/cores.py); begins the update
            metrics = await asyncio.to_thread(cfg.core_plan().in_trainer(optimize), run, build_samples(batch.groups, cfg))
            t1 = time.perf_counter()
            run.control.begin_update()  # no-op when optimize already began it (a stub optimize in tests)
            run.push_weights()
            run.step += 1
            batch.ack(run.step)
            run.control.end_update()
            source.on_weights(run.version)
            metrics.update(rollout_metrics(batch.trajectories, run.version))
            metrics.update(batch.metrics)
            metrics.update(spec.step(run.engine))
            metrics.update({"time/train_s": t1 - t0, "time/sync_s": time.perf_counter() - t1})
            new_best = False
            if run.step % cfg.eval.every == 0 or run.step == cfg.steps:
                metrics["eval/reward"], by_family = await evaluate_domain_metrics(run)
                metrics.update(by_family)  # a curriculum's families: eval/<family>, domain/<family>/eval_pass_rate
                result.eval_rewards.append((run.step, metrics["eval/reward"]))
                new_best = run.is_new_best(metrics["eval/reward"])
            run.log(metrics)
            observe(doctor, run.step, metrics, batch.trajectories)  # new warnings -> doctor.jsonl (the table shows them)
            if on_step is not None:
                on_step(run.step, metrics)
            if run.step % cfg.checkpoint_every == 0 or run.step == cfg.steps or new_best:
                save_checkpoint(run)
    finally:
        await source.aclose()


def open_doctor(run: Run) -> LiveDoctor | None:
    """The run doctor watching this run (forgerl/doctor/live.py), with a resumed run's earlier
    metrics; None (and a warning) if it cannot start: the doctor never stops training."""
    try:
        doctor = LiveDoctor(run.run_dir, public_config(run.config))
        doctor.load_history(run.store.metrics(run.run_id))
        return doctor
    except Exception as exc:  # noqa: BLE001 — a diagnosis aid must not end a training run
        log.warning("the run doctor could not start (%s: %s); training goes on without it", type(exc).__name__, exc)
        return None


def observe(doctor: LiveDoctor | None, step: int, metrics: dict[str, float], trajectories: list[Trajectory]) -> None:
    """One step to the doctor; a doctor that fails is turned off with one warning."""
    if doctor is None or doctor.failed:
        return
    try:
        doctor.observe(step, metrics, trajectories)
    except Exception as exc:  # noqa: BLE001 — as above
        doctor.failed = True
        log.warning("the run doctor failed at step %d (%s: %s); it is off for the rest of this run",
                    step, type(exc).__name__, exc)


def stop_interrupted(run: Run, *, abandoned: bool) -> TrainingInterrupted:
    """Checkpoint the last completed step (unless the weights are mid-update, which an abandon
    never leaves them in, or it is saved already) and say how to resume."""
    checkpointed = False
    if not run.control.updating:
        checkpointed = save_checkpoint_if_new(run) or run.checkpointed_step == run.step
    return TrainingInterrupted(run.run_dir, run.step if checkpointed else (run.checkpointed_step or 0),
                               abandoned=abandoned, checkpointed=checkpointed)


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
        values = sorted({str(t.value_of(key)) for t in scored if t.value_of(key) is not None})
        for v in values:
            out[f"rollout/reward/{key}={v}"] = _mean([t.reward for t in scored if str(t.value_of(key)) == v])
    return out


def _mean(values: list[Any]) -> float:
    values = [float(v) for v in values if v is not None]
    return sum(values) / len(values) if values else 0.0


__all__ = ["TrainResult", "rollout_metrics", "stop_interrupted", "train"]
