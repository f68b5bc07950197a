"""The one episode runner every rollout source and the held-out evaluation use.

    trajectories = await run_episode_for(run, task, env, sampling, perturbations=spec_or_None)

Why one: the trainer used to run episodes in three places, and each knew a different part of the
story (only one applied `[perturb]`, only one knew the multi-agent family). Here the two decisions
are explicit: the caller says which perturbations apply (training rollouts: the run's; held-out
evaluation: none), and the task's family says how an episode runs (`Family.episode_runner`; the
plain agent loop when it has none). An episode yields a list of trajectories: one for a
single-agent family, [coordinator, sub-agents...] for a multi-agent one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from forgerl.agent.context import ContextManager
from forgerl.agent.loop import run_episode
from forgerl.agent.tools import DEFAULT_TOOL_TIMEOUT_S, close_env
from forgerl.envs.base import Environment, EpisodeLimits, Task, family_info
from forgerl.errors import ConfigError
from forgerl.perturb.apply import perturbing
from forgerl.rollout.run_view import RunView
from forgerl.types import Trajectory

if TYPE_CHECKING:
    from forgerl.engine.base import SamplingParams
    from forgerl.perturb.spec import PerturbSpec


def check_episode_features(config: Any) -> None:
    """Refuse, before a run opens, what the family cannot do: `[perturb]` or `[context]` on a family
    that runs its own episodes (a multi-agent family builds its agents' environments and loops
    itself, so neither a perturbed scaffold nor a context manager could reach them)."""
    perturb = getattr(config, "perturb", None)
    curriculum = getattr(config, "curriculum", None)
    for name in curriculum.families() if curriculum is not None else [config.env]:
        family = family_info(name)
        if perturb is not None and perturb.active and family.episode_runner is not None:
            raise ConfigError(f"[perturb] cannot be combined with env {family.name!r}: that family runs its own "
                              "(multi-agent) episodes, whose environments perturbations cannot wrap; remove [perturb] "
                              "or train another family")
        context = getattr(config, "context", None)
        if context is not None and context.manager != "none" and family.episode_runner is not None:
            raise ConfigError(f"[context] manager = {context.manager!r} cannot be combined with env {family.name!r}: "
                              "that family runs its own (multi-agent) episodes; set manager = \"none\" or train another family")


def episode_limits(config: Any, *, max_turns: int | None = None, max_context: int | None = None) -> EpisodeLimits:
    """The run's per-episode limits (turns, context, tool timeout) from its config; a curriculum
    domain may narrow turns and context (None: the run's)."""
    return EpisodeLimits(max_turns=max_turns or config.max_turns, max_total_tokens=max_context or config.max_context,
                         tool_timeout_s=getattr(config, "tool_timeout_s", DEFAULT_TOOL_TIMEOUT_S))


def context_manager_for(config: Any, *, evaluation: bool) -> ContextManager | None:
    """A fresh context manager for one episode: the run's `[context]`, or for held-out evaluation
    `[eval.context]` when it is set (a manager applied at inference only)."""
    context = getattr(config, "context", None)
    eval_context = getattr(getattr(config, "eval", None), "context", None)
    chosen = eval_context if evaluation and eval_context is not None else context
    return chosen.build() if chosen is not None else None


async def run_episode_for(run: RunView, task: Task, env: Environment, sampling: SamplingParams, *,
                          perturbations: PerturbSpec | None, group_id: str | None = None, family: str | None = None,
                          limits: EpisodeLimits | None = None, evaluation: bool = False) -> list[Trajectory]:
    """One episode of `task` on the run's engine, as the task's family runs it, with
    `perturbations` applied (None or an inactive spec: unperturbed) and the run's context manager
    (`evaluation`: the held-out one). `env` is closed afterwards (cleanup never raises: one failed
    cleanup must not lose a batch). `family` and `limits` default to the run's `env` and limits (a
    curriculum passes its domain's)."""
    limits = limits or episode_limits(run.config)
    family = family_info(family or run.config.env)
    if family.episode_runner is not None:
        if perturbations is not None and perturbations.active:  # TrainConfig refuses this combination
            raise ValueError(f"family {family.name!r} runs its own episodes, which cannot be perturbed")
        await close_env(env, Trajectory())  # the family builds its own environments
        return await family.episode_runner(run.engine, run.fmt, task, sampling=sampling, limits=limits,
                                           group_id=group_id)
    runner = run_episode
    if perturbations is not None and perturbations.active:
        runner = perturbing(run_episode, perturbations, run_seed=run.config.seed, training_only=False)
    trajectory = Trajectory(group_id=group_id)
    try:
        trajectory = await runner(run.engine, run.fmt, env, task, sampling=sampling, max_turns=limits.max_turns,
                                  max_total_tokens=limits.max_total_tokens, tool_timeout_s=limits.tool_timeout_s,
                                  context_manager=context_manager_for(run.config, evaluation=evaluation),
                                  trajectory=trajectory)
    finally:
        await close_env(env, trajectory)
    return [trajectory]


__all__ = ["check_episode_features", "context_manager_for", "episode_limits", "run_episode_for"]
