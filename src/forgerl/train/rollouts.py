"""Task drawing for the trainer, held-out evaluation, and `collect_groups` (one step's groups at once,
for experiments that roll out without training). Episodes run through rollout/episode.py.

Task and sampling seeds derive from (run seed, step, group, index), so a resumed run redoes a step
with the same tasks; held-out evaluation tasks use a seed range training never draws from.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from forgerl.agent.tools import DEFAULT_TOOL_TIMEOUT_S
from forgerl.engine.base import SamplingParams
from forgerl.rollout.curriculum import curriculum_specs, eval_specs
from forgerl.rollout.episode import episode_limits, run_episode_for
from forgerl.rollout.tasks import HELD_OUT_SEED_BASE, make_task, training_seed
from forgerl.types import Trajectory, TrajectoryStatus

if TYPE_CHECKING:
    from forgerl.train.run import Run

def tool_timeout_s(config: object) -> float | None:
    """The run's per-call tool timeout: `tool_timeout_s` of the config (TrainConfig has it), else the
    agent loop's default (configs of other loops)."""
    return getattr(config, "tool_timeout_s", DEFAULT_TOOL_TIMEOUT_S)


async def _episode(run: Run, seed: int, difficulty: int | None, sampling: SamplingParams, group_id: str | None,
                   *, perturbed: bool, domain: dict[str, Any] | None = None) -> list[Trajectory]:
    """One episode of task `seed` through the shared episode runner; `perturbed`: with the run's
    `[perturb]` spec (training rollouts), else unperturbed (held-out evaluation). `domain`: a
    curriculum's family and limits for this task (rollout/curriculum.py eval_specs)."""
    cfg = run.config
    domain = domain or {}
    family = domain.get("family") or cfg.env
    if domain.get("max_tokens"):
        sampling = dataclasses.replace(sampling, max_tokens=domain["max_tokens"])
    env, task = make_task(family, seed, difficulty)
    limits = episode_limits(cfg, max_turns=domain.get("max_turns"), max_context=domain.get("max_context"))
    trajectories = await run_episode_for(run, task, env, sampling, perturbations=cfg.perturb if perturbed else None,
                                         group_id=group_id, family=family, limits=limits, evaluation=not perturbed)
    for trajectory in trajectories:
        trajectory.rollout_step = run.step
        trajectory.difficulty = difficulty if difficulty is not None else getattr(task, "difficulty", None)
    return trajectories


async def collect_groups(run: Run, *, skip: set[int] | None = None, on_episode: Callable[[], None] | None = None,
                         done: int = 0) -> list[list[Trajectory]]:
    """`groups_per_step` tasks x `group_size` rollouts, all concurrent on the engine; groups in
    `skip` (reused from the store after an interrupt) are not collected. `on_episode` is called
    as each episode ends (the progress bar)."""
    cfg = run.config
    base = SamplingParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature, top_p=cfg.top_p)
    wanted = [g for g in range(cfg.groups_per_step) if g not in (skip or set())]
    if on_episode is not None:
        for _ in range(done):
            on_episode()

    async def counted(job: Awaitable[list[Trajectory]]) -> list[Trajectory]:
        trajectories = await job
        if on_episode is not None:
            on_episode()
        return trajectories

    curriculum = getattr(cfg, "curriculum", None)  # the step's groups as the trainer's source draws them
    specs = (list(itertools.islice(curriculum_specs(curriculum, run_seed=cfg.seed, groups_per_step=cfg.groups_per_step),
                                   run.step * cfg.groups_per_step, (run.step + 1) * cfg.groups_per_step))
             if curriculum is not None else None)
    jobs = []
    for g in wanted:
        seed = training_seed(cfg.seed, run.step, g)
        difficulty = specs[g]["difficulty"] if specs else cfg.difficulty[seed % len(cfg.difficulty)]
        for i in range(cfg.group_size):
            sampling = dataclasses.replace(base, seed=seed * 101 + i)
            jobs.append(counted(_episode(run, seed, difficulty, sampling, group_id=f"step{run.step}-g{g}", perturbed=True,
                                         domain=specs[g] if specs else None)))
    episodes = await asyncio.gather(*jobs)
    return [[t for e in episodes[k * cfg.group_size:(k + 1) * cfg.group_size] for t in e] for k in range(len(wanted))]


async def evaluate(run: Run) -> float:
    """Mean reward over `eval.tasks` held-out tasks (one rollout each; infra failures excluded)."""
    return (await evaluate_domains(run))[0]


async def evaluate_domains(run: Run) -> tuple[float, dict[str, float]]:
    """The mean held-out reward, and with a curriculum each family's (`eval.tasks` split over the
    curriculum's families, each at its target levels: rollout/curriculum.py eval_specs); without
    one the dict is empty."""
    mean, metrics = await evaluate_domain_metrics(run)
    return mean, {key.removeprefix("eval/"): value for key, value in metrics.items() if key.startswith("eval/")}


async def evaluate_domain_metrics(run: Run) -> tuple[float, dict[str, float]]:
    """The mean held-out reward, and with a curriculum the per-family metrics the trainer logs:
    `eval/<family>` (mean reward), `domain/<family>/eval_pass_rate` (share of tasks solved: the
    verifier's outcome 1.0, as `forgerl eval` counts a pass, whatever speed or length shaping did
    to the reward) and `domain/<family>/eval_scored` (tasks scored, infra failures excluded),
    so a held-out pass rate's interval can be computed from the store. Every run also gets the
    pass rate, count and truncation rate over all held-out tasks (`heldout/...`, `_pass_metrics`)."""
    cfg = run.config
    base = SamplingParams(max_tokens=cfg.max_tokens, temperature=cfg.eval.temperature)
    curriculum = getattr(cfg, "curriculum", None)
    domains = eval_specs(curriculum, cfg.eval.tasks) if curriculum is not None else None
    # one sampling seed per task, the same at every evaluation: with eval.temperature > 0 the
    # evaluations of a run share their random numbers, so differences between them are less noisy
    jobs = [_episode(run, HELD_OUT_SEED_BASE + i,
                     domains[i]["difficulty"] if domains else cfg.difficulty[i % len(cfg.difficulty)],
                     dataclasses.replace(base, seed=cfg.seed * 1_000_003 + i), None, perturbed=False,
                     domain=domains[i] if domains else None)
            for i in range(cfg.eval.tasks)]
    results = [episode[0] for episode in await asyncio.gather(*jobs)]  # the main agent's reward is the episode's
    mean = _mean_reward(results)
    metrics = _pass_metrics(results)
    if not domains:
        return mean, metrics
    for family in dict.fromkeys(d["family"] for d in domains):
        mine = [t for t, d in zip(results, domains, strict=True) if d["family"] == family]
        scored = _scored(mine)
        metrics[f"eval/{family}"] = _mean_reward(mine)
        metrics[f"domain/{family}/eval_scored"] = float(len(scored))
        if scored:
            metrics[f"domain/{family}/eval_pass_rate"] = sum(float(t.passed) for t in scored) / len(scored)
    return mean, metrics


def _pass_metrics(results: list[Trajectory]) -> dict[str, float]:
    """Over the scored held-out episodes (infra failures excluded): `heldout/pass_rate` (the verifier
    passed them), `heldout/scored`, `heldout/truncated_rate` (cut by the context or turn budget) and
    `heldout/policy_rewrites` (context rewrites the policy asked for, per episode). Not under
    `eval/`, whose other keys name a curriculum's families."""
    scored = _scored(results)
    if not scored:
        return {"heldout/scored": 0.0}
    n = len(scored)
    policy_rewrites = sum(r.get("by") == "policy" for t in scored for r in t.metadata.get("context_rewrites", []))
    return {"heldout/pass_rate": sum(t.passed for t in scored) / n, "heldout/scored": float(n),
            "heldout/truncated_rate": sum(t.status == TrajectoryStatus.TRUNCATED for t in scored) / n,
            "heldout/policy_rewrites": policy_rewrites / n}


def _scored(results: list[Trajectory]) -> list[Trajectory]:
    return [t for t in results if t.status != TrajectoryStatus.FAILED and t.reward is not None]


def _mean_reward(results: list[Trajectory]) -> float:
    scored = [float(t.reward) for t in _scored(results) if t.reward is not None]
    return sum(scored) / len(scored) if scored else 0.0
