"""Measuring a policy under one scaffold on one split: the episodes behind every number the search uses.

The same agent loop as training and `forgerl eval` (agent/loop.py run_episode) on the split's task
seeds (evolve/splits.py), with the scaffold's perturbation spec applied at its fixed `variant` seed
(the same rewrite on every task) and its context policy (else the config's `[eval.context]`) as the
loop's context manager. Sampling is
the config's held-out evaluation (`eval.temperature`, greedy by default), seeded per task, so a
measurement repeats. A pass is a verifier outcome of 1; infrastructure failures are counted apart.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgerl.agent.context import ContextManager, DropOldToolOutputs
from forgerl.agent.loop import run_episode
from forgerl.agent.tools import close_env
from forgerl.chat import get_format
from forgerl.engine.base import SamplingParams
from forgerl.envs.base import make_env, sample_task
from forgerl.evolve.space import ScaffoldChoice
from forgerl.evolve.splits import Measurement, SplitName, task_seeds
from forgerl.perturb.apply import apply_perturbations
from forgerl.stats import wilson_interval
from forgerl.types import Trajectory, TrajectoryStatus

if TYPE_CHECKING:
    from forgerl.engine.base import Engine
    from forgerl.train.config import TrainConfig


async def run_split(engine: Engine, cfg: TrainConfig, scaffold: ScaffoldChoice, split: SplitName, n: int, *,
                    concurrency: int = 16) -> list[Trajectory]:
    """`n` episodes of the split's first `n` tasks under `scaffold`, `concurrency` at a time."""
    spec, base_format, gate = scaffold.perturb_spec(), get_format(cfg.chat_format), asyncio.Semaphore(concurrency)
    drop_after = scaffold.drop_after()

    async def one(i: int, seed: int) -> Trajectory:
        async with gate:
            task = sample_task(cfg.env, seed, difficulty=cfg.difficulty[i % len(cfg.difficulty)])
            p = apply_perturbations(task, make_env(cfg.env, seed), spec, scaffold.variant)
            sampling = p.sampling(SamplingParams(max_tokens=cfg.max_tokens, temperature=cfg.eval.temperature,
                                                 seed=cfg.seed * 1_000_003 + i), engine.tokenizer)
            trajectory = Trajectory(perturbations=p.record, difficulty=task.difficulty,
                                    metadata={"scaffold": scaffold.name(), "split": split, "task_seed": seed})
            try:
                return await run_episode(engine, p.format(base_format), p.env, p.task, sampling=sampling,
                                         max_turns=cfg.max_turns, max_total_tokens=min(cfg.max_context, engine.max_context),
                                         context_manager=context_manager(cfg, drop_after),
                                         tool_timeout_s=cfg.tool_timeout_s, trajectory=trajectory)
            finally:
                await close_env(p.env, trajectory)

    return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(task_seeds(split, n)))))


def context_manager(cfg: TrainConfig, drop_after: int | None) -> ContextManager | None:
    """A fresh manager per episode: the scaffold's context policy, else the config's held-out one
    (`[eval.context]`, else `[context]`), so context knobs are searchable as config keys too."""
    if drop_after is not None:
        return DropOldToolOutputs(drop_after)
    return (cfg.eval.context or cfg.context).build()


def summarize(split: SplitName, trajectories: list[Trajectory], seeds: dict[str, Any]) -> Measurement:
    scored = [t for t in trajectories if t.status != TrajectoryStatus.FAILED and t.reward is not None]
    wins = sum(1 for t in scored if t.reward_breakdown.get("outcome", 0.0) >= 1.0)
    low, high = wilson_interval(wins, len(scored))
    mean = sum(t.reward or 0.0 for t in scored) / len(scored) if scored else 0.0
    return Measurement(split=split, n=len(scored), successes=wins, mean_reward=mean, ci_low=low, ci_high=high,
                       failed=len(trajectories) - len(scored), seeds=seeds)


def measure(engine: Engine, cfg: TrainConfig, scaffold: ScaffoldChoice, split: SplitName, n: int, *,
            out_dir: Path | None = None, concurrency: int = 16) -> Measurement:
    """The policy behind `engine` under `scaffold` on `n` tasks of `split`; trajectories kept in `out_dir`'s store."""
    trajectories = asyncio.run(run_split(engine, cfg, scaffold, split, n, concurrency=concurrency))
    seeds = {"tasks": [task_seeds(split, n)[0], n], "sampling": [cfg.seed * 1_000_003, "+ task index"],
             "perturbation_variant": scaffold.variant, "run_seed": cfg.seed, "temperature": cfg.eval.temperature}
    if out_dir is not None:
        from forgerl.store import TrajectoryStore  # heavy: sqlite store, only when trajectories are kept

        out_dir.mkdir(parents=True, exist_ok=True)
        with TrajectoryStore(out_dir) as store:
            run_id = store.add_run({"kind": "evolve-measure", "split": split, "n": n, "scaffold": scaffold.model_dump()})
            store.add_trajectories(trajectories, run_id)
            store.set_run_status(run_id, "completed")
    return summarize(split, trajectories, seeds)


def with_checkpoint(engine: Engine, checkpoint: Path, version: int) -> Engine:
    """`engine` serving the weights of a trained run's checkpoint (verified first: a damaged file is
    a CheckpointError naming it, not garbage weights)."""
    from safetensors.torch import load_file

    from forgerl.model.checkpoints import verify_checkpoint  # heavy: the store (sqlite), only for a checkpoint

    verify_checkpoint(checkpoint)
    engine.update_weights(load_file(str(checkpoint / "model.safetensors")), version)
    return engine

