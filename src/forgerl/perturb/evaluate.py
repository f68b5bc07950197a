"""Reward per scaffold, with confidence intervals: how well a policy carries to settings it never saw.

Each scaffold runs the same `n` held-out tasks (seeds from train/rollouts.py's held-out range,
disjoint from training) through the agent loop (`agent.loop.run_episode`) with its perturbation
spec applied; the perturbation seed is the task seed, so two policies are compared on identical
episodes. The success rate (the verifier's outcome) gets a Wilson score interval, which stays
inside [0, 1] and is honest at the small n and extreme rates a tiny policy produces; the mean
reward (outcome plus process terms) is reported beside it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from forgerl.agent.loop import run_episode
from forgerl.agent.tools import close_env
from forgerl.chat import get_format
from forgerl.engine.base import SamplingParams
from forgerl.envs.base import make_env, sample_task
from forgerl.envs.suites import HELD_OUT_SEED_BASE  # = train.rollouts'; importing train made a perturb <-> train cycle
from forgerl.perturb.apply import apply_perturbations
from forgerl.perturb.spec import Scaffold
from forgerl.stats import wilson_interval  # the one Wilson interval (re-exported here)
from forgerl.types import Trajectory, TrajectoryStatus


@dataclass
class ScaffoldResult:
    scaffold: str
    held_out: bool
    n: int
    """Scored episodes (infrastructure failures excluded)."""
    successes: int
    success_rate: float
    ci_low: float
    ci_high: float
    mean_reward: float
    failed: int
    """Episodes lost to infrastructure failures (kept out of every number above)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(scaffold: Scaffold, trajectories: Sequence[Trajectory]) -> ScaffoldResult:
    scored = [t for t in trajectories if t.status != TrajectoryStatus.FAILED and t.reward is not None]
    wins = sum(1 for t in scored if t.reward_breakdown.get("outcome", 0.0) >= 1.0)
    low, high = wilson_interval(wins, len(scored))
    return ScaffoldResult(
        scaffold=scaffold.name, held_out=scaffold.held_out, n=len(scored), successes=wins,
        success_rate=wins / len(scored) if scored else 0.0, ci_low=low, ci_high=high,
        mean_reward=sum(t.reward for t in scored) / len(scored) if scored else 0.0,  # type: ignore[misc]
        failed=len(trajectories) - len(scored),
    )


async def run_scaffold(engine: Any, env_name: str, scaffold: Scaffold, n: int, *, chat_format: str = "minimax_m2",
                       difficulty: Sequence[int] = (1,), max_turns: int = 8, max_tokens: int = 96,
                       max_context: int = 1536, temperature: float = 0.0, seed: int = 0) -> list[Trajectory]:
    """`n` held-out episodes under one scaffold, concurrently on `engine`."""
    base_format = get_format(chat_format)

    async def one(i: int) -> Trajectory:
        task_seed = HELD_OUT_SEED_BASE + i
        level = difficulty[i % len(difficulty)] if difficulty else None
        task, env = sample_task(env_name, task_seed, difficulty=level), make_env(env_name, task_seed)
        p = apply_perturbations(task, env, scaffold.spec, task_seed)
        sampling = p.sampling(SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed),
                              engine.tokenizer)
        trajectory = Trajectory(perturbations=p.record, metadata={"scaffold": scaffold.name})
        try:
            return await run_episode(engine, p.format(base_format), p.env, p.task, sampling=sampling,
                                     max_turns=max_turns, max_total_tokens=max_context, trajectory=trajectory)
        finally:
            await close_env(p.env, trajectory)  # never raises: a failed cleanup must not lose the batch

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def evaluate_scaffolds_async(engine: Any, env_name: str, scaffolds: Sequence[Scaffold], n: int,
                                   **episode_options: Any) -> list[ScaffoldResult]:
    if n < 1:
        raise ValueError(f"n must be >= 1 episodes per scaffold, got {n}")
    results = []
    for scaffold in scaffolds:  # one scaffold at a time: its n episodes share the engine's batch
        trajectories = await run_scaffold(engine, env_name, scaffold, n, **episode_options)
        results.append(summarize(scaffold, trajectories))
    return results


def evaluate_scaffolds(engine: Any, env_name: str, scaffolds: Sequence[Scaffold], n: int,
                       **episode_options: Any) -> list[ScaffoldResult]:
    """Success rate (Wilson 95% CI) and mean reward of `engine`'s policy per scaffold, on `n`
    held-out tasks each. Options: chat_format, difficulty, max_turns, max_tokens, max_context,
    temperature (0 = greedy), seed."""
    return asyncio.run(evaluate_scaffolds_async(engine, env_name, scaffolds, n, **episode_options))


def generalization_gap(results: Sequence[ScaffoldResult], metric: str = "success_rate") -> float:
    """In-distribution (the `default` scaffold) minus the mean over held-out scaffolds."""
    default = next((r for r in results if r.scaffold == "default"), None)
    held = [getattr(r, metric) for r in results if r.held_out]
    if default is None or not held:
        raise ValueError("the gap needs a `default` scaffold and at least one held-out scaffold")
    return getattr(default, metric) - sum(held) / len(held)
