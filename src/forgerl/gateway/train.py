"""Training a black-box agent through the gateway: the agent program is the rollout worker.

Per step, every rollout is one gateway session: open it (task drawn like the white-box trainer
draws them), hand its base URL and key to the agent, end it when the agent returns (the
environment scores it), fetch the trajectory. `GatewaySource` hands those groups to the one
training loop of `forgerl train` (train/loop.py), so evaluation, checkpoints, resume and the reward
model work here as there. The agent is any callable
`agent(base_url, api_key)` — e.g. `examples/openai_agent.py`'s `run_agent`, or a wrapper that
starts a subprocess with OPENAI_BASE_URL/OPENAI_API_KEY set. Agents run in threads, so a
synchronous OpenAI-client agent needs no changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from forgerl.envs.base import family_info
from forgerl.errors import ConfigError
from forgerl.gateway.core import Gateway
from forgerl.gateway.serve import BackgroundGateway
from forgerl.review.train_hook import reward_model_transform_for
from forgerl.rollout.source import RolloutBatch
from forgerl.rollout.tasks import training_seed
from forgerl.train.config import TrainConfig
from forgerl.types import Trajectory

log = logging.getLogger(__name__)

Agent = Callable[[str, str], Any]


def run_session(http: httpx.Client, agent: Agent, body: dict[str, Any]) -> Trajectory:
    """One rollout through a gateway: open a session, run the agent, end the session, return the
    stored trajectory. An agent that raises ends its session as FAILED (kept out of the loss)."""
    s = http.post("/sessions", json=body).raise_for_status().json()
    end: dict[str, Any] = {}
    try:
        agent(s["base_url"], s["api_key"])
    except Exception as exc:  # noqa: BLE001 — a crashing agent is a failed rollout, not a failed run
        log.warning("agent failed in session %s: %s", s["session_id"], exc)
        end = {"status": "failed", "reason": f"agent raised {type(exc).__name__}: {exc}"[:2000]}
    http.post(f"/sessions/{s['session_id']}/end", json=end).raise_for_status()
    data = http.get(f"/sessions/{s['session_id']}/trajectory").raise_for_status().json()
    return Trajectory.model_validate(data)


def collect_groups(url: str, agent: Agent, *, family: str, seeds: list[int], difficulties: list[int | None],
                   group_size: int, tag: str = "", admin_key: str | None = None,
                   max_workers: int | None = None) -> list[list[Trajectory]]:
    """`len(seeds)` groups of `group_size` rollouts (same task within a group), all concurrent."""
    headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
    jobs = [(g, {"family": family, "seed": seed, "difficulty": diff, "group_id": f"{tag}g{g}"})
            for g, (seed, diff) in enumerate(zip(seeds, difficulties, strict=True)) for _ in range(group_size)]
    with httpx.Client(base_url=url, headers=headers, timeout=600) as http, \
            ThreadPoolExecutor(max_workers=max_workers or len(jobs) or 1) as pool:
        trajectories = list(pool.map(lambda job: run_session(http, agent, job[1]), jobs))
    groups: list[list[Trajectory]] = [[] for _ in seeds]
    for (g, _), traj in zip(jobs, trajectories, strict=True):
        groups[g].append(traj)
    return groups


class GatewaySource:
    """Rollouts from a black-box agent program through a recording gateway on a loopback port (a
    rollout source: forgerl/rollout/source.py). Each step's tasks are drawn as the scheduler source
    draws them (seed, step, group). Trajectories are stored here, after the reward transform, so
    the store keeps the reward that was trained on. A resumed run generates the steps it redoes
    again (untrained rollouts of the run are superseded: an agent session cannot be replayed)."""

    def __init__(self, agent: Agent, *, reward_transform: Callable[[Any], Any] | None = None,
                 max_workers: int | None = None) -> None:
        self.agent = agent
        self.max_workers = max_workers
        self._make_transform = reward_transform
        self.reward_transform: Any = None
        self._stack = contextlib.ExitStack()
        self._run: Any = None
        self._url = ""
        self._admin_key: str | None = None

    def check(self, config: TrainConfig) -> None:
        """The gateway serves the family's own environment: it cannot perturb it, nor run a family's
        own (multi-agent) episodes."""

        if config.perturb.active:
            raise ConfigError("[perturb] is not supported when training through the gateway (its sessions serve the "
                              "family's unperturbed environment to the agent program): remove [perturb], or train "
                              "with `forgerl train`, whose rollouts are perturbed")
        if config.curriculum is not None:
            raise ConfigError("[[curriculum.stages]] is not supported when training through the gateway (its sessions "
                              "draw tasks of `env` alone): remove the curriculum, or train with `forgerl train`")
        if family_info(config.env).episode_runner is not None:
            raise ConfigError(f"env {config.env!r} runs its own multi-agent episodes, which a black-box agent program "
                              "cannot drive through the gateway: train it with `forgerl train`")

    async def start(self, run: Any, *, resumed: bool) -> None:
        if resumed:
            stale = [t.id for t in run.store.query(run_id=run.run_id, consumed=False)]
            run.store.supersede_trajectories(stale)
        self._run = run
        self.reward_transform = self._make_transform(run) if self._make_transform is not None else None
        gateway = Gateway(run.engine, run.fmt)  # no store: the source stores after the reward transform
        bg = self._stack.enter_context(BackgroundGateway(gateway))
        self._url, self._admin_key = bg.url, gateway.admin_key

    async def next_batch(self) -> RolloutBatch | None:
        run, config = self._run, self._run.config
        t0 = time.perf_counter()
        seeds = [training_seed(config.seed, run.step, g) for g in range(config.groups_per_step)]
        diffs = [config.difficulty[s % len(config.difficulty)] for s in seeds]
        groups = await asyncio.to_thread(collect_groups, self._url, self.agent, family=config.env, seeds=seeds,
                                         difficulties=diffs, group_size=config.group_size, tag=f"step{run.step}-",
                                         admin_key=self._admin_key, max_workers=self.max_workers)
        trajectories = [t for g in groups for t in g]
        if self.reward_transform is not None:
            await asyncio.to_thread(self.reward_transform.apply, groups)
        for traj in trajectories:
            traj.rollout_step = run.step
        run.store.add_trajectories(trajectories, run.run_id)
        metrics = {"time/rollout_s": time.perf_counter() - t0, "gateway/new_roots_per_episode": _mean_roots(trajectories)}
        if self.reward_transform is not None:
            metrics.update(self.reward_transform.metrics(trajectories))
        ids = [t.id for t in trajectories]
        return RolloutBatch(groups=groups, metrics=metrics, ack=lambda step: run.store.mark_consumed(ids, step))

    def on_weights(self, version: int) -> None:
        """Nothing to do: the gateway serves the engine, which has the new weights already."""

    async def aclose(self) -> None:
        self._stack.close()


def train_through_gateway(config: TrainConfig, agent: Agent, *, on_step: Callable[[int, dict[str, float]], None] | None = None,
                          resume: bool = False, max_workers: int | None = None) -> dict[str, Any]:
    """RL-train `config.model` on `config.env` with `agent` as the rollout program, through a
    gateway on a loopback port: the training loop of `forgerl train` (held-out evaluation,
    checkpoints, best checkpoint, resume, reward model, stop signals) fed by a GatewaySource.
    Returns {run_dir, steps, rewards (rollout reward per step), eval_rewards}."""
    from forgerl.train.loop import train  # heavy: torch, kept out of this module's import

    if not isinstance(config, TrainConfig):
        raise ConfigError(f"train_through_gateway takes a TrainConfig (forgerl.train.config.load_config), "
                          f"got {type(config).__name__}")
    rewards: list[float] = []

    def record(step: int, metrics: dict[str, float]) -> None:
        rewards.append(metrics["rollout/reward"])
        if on_step is not None:
            on_step(step, metrics)

    transform = reward_model_transform_for(config.reward_model)  # before the run opens: a broken model leaves no run
    source = GatewaySource(agent, reward_transform=lambda run: transform, max_workers=max_workers)
    result = train(config, source, resume=resume, on_step=record)
    return {"run_dir": result.run_dir, "steps": config.steps, "rewards": rewards, "eval_rewards": result.eval_rewards}


def _mean_roots(trajectories: list[Trajectory]) -> float:
    """How often agents' histories broke the token chain (1.0 = one root per episode, ideal)."""
    return sum(len(t.metadata.get("new_roots", [])) for t in trajectories) / max(1, len(trajectories))
