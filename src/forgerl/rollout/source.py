"""Rollout sources: where the training loop (train/loop.py) gets its batches from.

    await source.start(run, resumed=...)    # the run is open: its engine, store, step and version
    batch = await source.next_batch()       # one step's groups, stored; None: the source is dry
    ... optimize, push weights ...
    batch.ack(step)                         # durable: trained on at `step` (a restart skips it)
    source.on_weights(version)              # the policy moved on
    await source.aclose()

A source owns *collection* and everything a restart needs to redo it losslessly (which rollouts
were generated, which were trained on); the loop owns the optimizer, evaluation, checkpoints and
metrics, so every feature of the loop works with every source. Implementations: `SchedulerSource`
(the windowed-FIFO scheduler in all its modes: sync, fifo, windowed, greedy) and
`forgerl.gateway.train.GatewaySource` (black-box agent programs through the recording gateway). A
distributed source (rollout workers on other machines) implements the same five calls.

A batch's trajectories are in the store before the loop sees them, with any reward transform
(the reward model) already applied, so the store records the reward that was trained on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from forgerl.engine.base import SamplingParams
from forgerl.rollout.curriculum import AdaptiveLevels, check_curriculum, curriculum_specs, domain_metrics
from forgerl.rollout.episode import check_episode_features, episode_limits, run_episode_for
from forgerl.rollout.ledger import StoreLedger
from forgerl.rollout.progress import step_progress
from forgerl.rollout.run_view import RunView, TrainingConfig
from forgerl.rollout.scheduler import Batch, RolloutScheduler, SchedulerConfig
from forgerl.rollout.tasks import make_task, training_seed
from forgerl.types import Trajectory

log = logging.getLogger(__name__)


@dataclass
class RolloutBatch:
    """One step's rollouts as the loop trains on them."""

    groups: list[list[Trajectory]]
    """Advantage groups: one task's trajectories in one agent role (advantages compare within a group)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The source's own metrics for this batch (waiting time, staleness, reward-model blend)."""
    ack: Callable[[int], None] = lambda step: None
    """Record, durably, that the batch was trained on at `step`."""

    @property
    def trajectories(self) -> list[Trajectory]:
        return [t for group in self.groups for t in group]


class RolloutSource(Protocol):
    """What the training loop needs from rollout collection (see the module docstring)."""

    def check(self, config: TrainingConfig) -> None:
        """Refuse (ConfigError, saying what to change) a config this source cannot train as asked,
        before the run is opened."""
        ...

    async def start(self, run: RunView, *, resumed: bool) -> None: ...

    async def next_batch(self) -> RolloutBatch | None: ...

    def on_weights(self, version: int) -> None: ...

    async def aclose(self) -> None: ...


class RewardTransform(Protocol):
    """A change to rollouts' rewards between the environment's verdict and the store (the reward
    model: review/train_hook.py). `apply` works in place and is idempotent; `metrics` summarises
    what it did to a batch."""

    def apply(self, groups: list[list[Trajectory]]) -> None: ...

    def metrics(self, trajectories: list[Trajectory]) -> dict[str, float]: ...


# -- the scheduler source -----------------------------------------------------------------------
def group_specs(config: TrainingConfig, *, adaptive: AdaptiveLevels | None = None) -> Iterator[dict[str, Any]]:
    """Task k of the run: the seed of (step k // G, group k % G), so every mode draws the same tasks;
    with a curriculum also its family, stage and limits (rollout/curriculum.py; `adaptive`: the
    adaptive rule's levels)."""
    if getattr(config, "curriculum", None) is not None:
        yield from curriculum_specs(config.curriculum, run_seed=config.seed, groups_per_step=config.groups_per_step,
                                    adaptive=adaptive)
        return
    for k in itertools.count():
        seed = training_seed(config.seed, k // config.groups_per_step, k % config.groups_per_step)
        yield {"k": k, "seed": seed, "difficulty": config.difficulty[seed % len(config.difficulty)]}


async def rollout_group(run: RunView, spec: dict[str, Any], *, perturbed: bool,
                        on_episode: Callable[[dict[str, Any]], None] | None = None) -> list[Trajectory]:
    """`group_size` concurrent episodes of one task (a failed episode is data: see agent/loop.py);
    a multi-agent family's episodes contribute every agent's trajectory. `on_episode(spec)` is
    called as each episode ends (the step's progress bar)."""

    cfg = run.config
    base = SamplingParams(max_tokens=spec.get("max_tokens") or cfg.max_tokens, temperature=cfg.temperature, top_p=cfg.top_p)
    group_id = f"task{spec['k']}"
    family = spec.get("family") or cfg.env  # a curriculum's spec names its family (and may narrow the limits)
    limits = episode_limits(cfg, max_turns=spec.get("max_turns"), max_context=spec.get("max_context"))

    async def one(i: int) -> list[Trajectory]:
        env, task = make_task(family, spec["seed"], spec["difficulty"])
        sampling = dataclasses.replace(base, seed=spec["seed"] * 101 + i)
        episode = await run_episode_for(run, task, env, sampling, perturbations=cfg.perturb if perturbed else None,
                                        group_id=group_id, family=family, limits=limits)
        if on_episode is not None:
            on_episode(spec)
        return episode

    episodes = await asyncio.gather(*(one(i) for i in range(cfg.group_size)))
    trajectories = [t for episode in episodes for t in episode]
    step = spec["k"] // cfg.groups_per_step
    for traj in trajectories:
        traj.difficulty, traj.rollout_step = spec["difficulty"], step
        traj.metadata.update(task_index=spec["k"])
        if "stage" in spec:
            traj.metadata.update(curriculum_stage=spec["stage"])
    return trajectories


def advantage_groups(trajectories: list[Trajectory]) -> list[list[Trajectory]]:
    """One task's trajectories split by agent role (main / coordinator / sub-agents): advantages
    compare an agent only with agents in the same role (multiagent.episode_groups)."""
    roles: dict[str, list[Trajectory]] = {}
    for traj in trajectories:
        roles.setdefault("sub" if traj.agent_id.startswith("sub-") else traj.agent_id, []).append(traj)
    return list(roles.values())


def scheduler_config(config: TrainingConfig) -> SchedulerConfig:
    """The scheduler the config's `[rollout]` table asks for; a ticket is one group, so a batch is
    `groups_per_step` tickets. `sync` is the scheduler's own sync mode (one batch, no overlap)."""
    return config.rollout.scheduler(config.groups_per_step)


class SchedulerSource:
    """Groups from the rollout scheduler (rollout/scheduler.py) with its store ledger (lossless
    restarts: rollouts generated but not trained on are offered again after a resume)."""

    def __init__(self, scheduler: SchedulerConfig | None = None, *,
                 reward_transform: Callable[[RunView], RewardTransform | None] | None = None) -> None:
        self._config = scheduler
        self._make_transform = reward_transform  # built from the open run (which loaded the reward model)
        self.reward_transform: RewardTransform | None = None
        self.scheduler: RolloutScheduler | None = None
        self._batches: AsyncIterator[Batch] | None = None
        self._run: RunView | None = None
        self._advance: Callable[[], None] | None = None  # the progress bar of the step being collected
        self.levels: AdaptiveLevels | None = None  # a curriculum's adaptive difficulty rule

    def check(self, config: TrainingConfig) -> None:
        if getattr(config, "curriculum", None) is not None:
            check_curriculum(config.curriculum)
        check_episode_features(config)

    async def start(self, run: RunView, *, resumed: bool) -> None:
        cfg = run.config
        sched = self._config or scheduler_config(cfg)
        if sched.batch_size != cfg.groups_per_step:
            raise ValueError(f"scheduler.batch_size ({sched.batch_size}) must equal groups_per_step "
                             f"({cfg.groups_per_step}): a batch is one step's groups")
        self._run, self._config = run, sched
        self.reward_transform = self._make_transform(run) if self._make_transform is not None else None
        ledger = StoreLedger(run.store, run.run_id, run.run_dir, resumed_at=(run.step, run.version) if resumed else None)
        curriculum = getattr(cfg, "curriculum", None)
        if curriculum is not None and curriculum.adaptive is not None:
            self.levels = AdaptiveLevels(curriculum)
            if resumed:  # the rule's state is a function of the pass rates the run logged
                self.levels.replay(logged_pass_rates(run, curriculum.families()))
        self.scheduler = RolloutScheduler(self._produce, group_specs(cfg, adaptive=self.levels), sched, current_version=lambda: run.version,
                                          ledger=ledger)
        self._batches = self.scheduler.batches(max_batches=max(0, cfg.steps - run.step))

    async def _produce(self, spec: dict[str, Any]) -> list[Trajectory]:
        assert self._run is not None
        group = await rollout_group(self._run, spec, perturbed=True, on_episode=self._episode_done)
        if self.reward_transform is not None:  # before the ledger stores the group: the store keeps the blend
            await asyncio.to_thread(self.reward_transform.apply, [group])
        return group

    def _episode_done(self, spec: dict[str, Any]) -> None:
        """Advance the bar for episodes of the step being collected (asynchronous modes also run
        episodes of later steps meanwhile; those are not this step's progress)."""
        assert self._run is not None
        if self._advance is not None and spec["k"] // self._run.config.groups_per_step == self._run.step:
            self._advance()

    async def next_batch(self) -> RolloutBatch | None:
        assert self._batches is not None and self.scheduler is not None and self._config is not None, "start() first"
        assert self._run is not None

        cfg = self._run.config
        with step_progress(f"step {self._run.step + 1} rollouts", cfg.groups_per_step * cfg.group_size) as advance:
            self._advance = advance
            try:
                batch = await anext(self._batches)
            except StopAsyncIteration:
                return None
            finally:
                self._advance = None
        groups = [g for result in batch.results for g in advantage_groups(result)]
        metrics = {"time/rollout_s": batch.wait_s}
        if self.reward_transform is not None:
            metrics.update(self.reward_transform.metrics([t for g in groups for t in g]))
        if self._config.mode != "sync":
            metrics.update(_scheduler_metrics(batch, self.scheduler))
        if getattr(cfg, "curriculum", None) is not None:
            metrics.update(domain_metrics(cfg.curriculum, self._run.step, [t for g in groups for t in g], batch.specs))
        if self.levels is not None:
            rates = {k.split("/")[1]: v for k, v in metrics.items() if k.startswith("domain/") and k.endswith("/pass_rate")}
            moves = self.levels.observe(self._run.step, rates)
            for family, move in moves.items():
                log.info("curriculum: %s difficulty %s after step %d", family, "up" if move > 0 else "down", self._run.step + 1)
            metrics.update(self.levels.metrics(self._run.step, moves))
        return RolloutBatch(groups=groups, metrics=metrics, ack=batch.ack)

    def on_weights(self, version: int) -> None:
        """Nothing to do: the scheduler reads the run's version when it submits and takes."""

    async def aclose(self) -> None:
        if self._batches is not None:
            await self._batches.aclose()  # type: ignore[attr-defined]  # cancels in-flight rollouts
            self._batches = None


def logged_pass_rates(run: RunView, families: list[str]) -> dict[int, dict[str, float]]:
    """{0-based step: {family: verifier pass rate}} of the steps the run completed, from its store
    (a step's metrics are logged at step + 1; values a resume superseded are left out)."""
    out: dict[int, dict[str, float]] = {}
    for family in families:
        for step, _, value in run.store.metrics(run.run_id, f"domain/{family}/pass_rate"):
            if 1 <= step <= run.step:
                out.setdefault(step - 1, {})[family] = value
    return out


def _scheduler_metrics(batch: Batch, scheduler: RolloutScheduler) -> dict[str, float]:
    return {
        "time/wait_s": batch.wait_s,
        "scheduler/staleness_mean": sum(batch.staleness) / max(1, len(batch.staleness)),
        "scheduler/staleness_max": float(max(batch.staleness, default=0)),
        "scheduler/stale_requeued": float(scheduler.counts["stale_requeued"]),
        "scheduler/stale_dropped": float(scheduler.counts["stale_dropped"]),
        "scheduler/failed_attempts": float(scheduler.stats["failed_attempts"]),
    }


__all__ = ["RewardTransform", "RolloutBatch", "RolloutSource", "SchedulerSource", "advantage_groups", "group_specs",
           "rollout_group", "scheduler_config"]
