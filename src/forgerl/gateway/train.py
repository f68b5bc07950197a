"""Training a black-box agent through the gateway: the agent program is the rollout worker.

Per step, every rollout is one gateway session: open it (task drawn like the white-box trainer
draws them), hand its base URL and key to the agent, end it when the agent returns (the
environment scores it; the gateway stores it), fetch the trajectory, then train on the groups with
the same sample building and optimizer step as `forgerl train`. The agent is any callable
`agent(base_url, api_key)` — e.g. `examples/openai_agent.py`'s `run_agent`, or a wrapper that
starts a subprocess with OPENAI_BASE_URL/OPENAI_API_KEY set. Agents run in threads, so a
synchronous OpenAI-client agent needs no changes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

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


def train_through_gateway(config: Any, agent: Agent, *, on_step: Callable[[int, dict[str, float]], None] | None = None,
                          ) -> dict[str, Any]:
    """RL-train `config.model` on `config.env` with `agent` as the rollout program, through a
    gateway on a loopback port. Returns {run_dir, steps, rewards} (rollout reward per step)."""
    from forgerl.gateway.core import Gateway
    from forgerl.gateway.serve import BackgroundGateway
    from forgerl.train.loop import rollout_metrics
    from forgerl.train.rollouts import training_seed
    from forgerl.train.run import close_run, open_run, save_checkpoint
    from forgerl.train.step import build_samples, optimize

    run = open_run(config)
    config = run.config
    rewards: list[float] = []
    try:
        gateway = Gateway(run.engine, run.fmt, store=run.store, run_id=run.run_id)
        with BackgroundGateway(gateway) as bg:
            while run.step < config.steps:
                t0 = time.perf_counter()
                seeds = [training_seed(config.seed, run.step, g) for g in range(config.groups_per_step)]
                diffs = [config.difficulty[s % len(config.difficulty)] for s in seeds]
                groups = collect_groups(bg.url, agent, family=config.env, seeds=seeds, difficulties=diffs,
                                        group_size=config.group_size, tag=f"step{run.step}-",
                                        admin_key=gateway.admin_key)
                trajectories = [t for g in groups for t in g]  # already stored by the gateway
                t1 = time.perf_counter()
                metrics = optimize(run, build_samples(groups, config))
                run.push_weights()
                run.step += 1
                run.store.mark_consumed([t.id for t in trajectories], run.step)
                metrics.update(rollout_metrics(trajectories, run.version))
                metrics.update({"time/rollout_s": t1 - t0, "time/train_s": time.perf_counter() - t1,
                                "gateway/new_roots_per_episode": _mean_roots(trajectories)})
                rewards.append(metrics["rollout/reward"])
                run.log(metrics)
                if on_step is not None:
                    on_step(run.step, metrics)
        save_checkpoint(run)
    finally:
        close_run(run)
    return {"run_dir": str(run.run_dir), "steps": run.step, "rewards": rewards}


def _mean_roots(trajectories: list[Trajectory]) -> float:
    """How often agents' histories broke the token chain (1.0 = one root per episode, ideal)."""
    return sum(len(t.metadata.get("new_roots", [])) for t in trajectories) / max(1, len(trajectories))
