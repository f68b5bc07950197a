"""Drawing one episode's perturbations from a spec and a seed, and applying them.

`apply_perturbations(task, env, spec, seed)` is the one entry point: it decides which dimensions
fire (each with its probability) and what each draws (a naming style, a response style, a chat
format, noise rates), wraps the environment, and returns what the agent loop needs — the
environment, the task, the chat format and the sampling stop ids. The record
(`Perturbed.record`, kept as `trajectory.perturbations`) lists every applied
perturbation with its kind, parameters and seed; `replay(record, task, env)` rebuilds the same
episode, because every draw is a function of (spec, seed) alone.

`perturbing(run_episode)` wraps the agent loop's `run_episode` so training rollouts are perturbed
without a change to the loop itself (see the hook notes in perturb/__init__.py).
"""

from __future__ import annotations

import dataclasses
import random
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from forgerl.chat import get_format
from forgerl.envs.base import Environment, Task
from forgerl.envs.noise import NoiseConfig, NoisyEnvironment
from forgerl.perturb.env import PerturbedEnvironment
from forgerl.perturb.spec import ERROR_STYLES, PerturbSpec
from forgerl.types import Trajectory

if TYPE_CHECKING:
    from forgerl.chat.base import ChatFormat
    from forgerl.engine.base import SamplingParams

RECORD_VERSION = 1


def _seed(seed: int, kind: str) -> int:
    """A per-dimension seed: stable across Python runs (no hash randomization)."""
    return zlib.crc32(f"perturb|{seed}|{kind}".encode())


def draw(spec: PerturbSpec, seed: int) -> dict[str, dict[str, Any]]:
    """Which dimensions fire for this episode and what each drew. A pure function of (spec, seed)."""
    gate = random.Random(_seed(seed, "gate"))
    fires = {name: gate.random() < spec.dimension(name).probability for name in
             ("tool_set", "tool_info", "system_prompt", "user_prompt", "chat_format", "environment", "tool_responses")}
    draws: dict[str, dict[str, Any]] = {}
    for name, fired in fires.items():
        if not fired:
            continue
        dim = spec.dimension(name)  # type: ignore[arg-type]
        s = _seed(seed, name)
        rng = random.Random(s)
        d: dict[str, Any] = {"seed": s, "strength": dim.strength}
        if name == "tool_set":
            d["protected"] = list(spec.tool_set.protected_tools)
        elif name == "tool_info":
            d["style"] = rng.choice(spec.allowed("naming_styles"))
        elif name == "chat_format":
            d["format"] = rng.choice(spec.allowed("chat_formats"))
        elif name == "environment":
            st = dim.strength
            d.update(failure_rate=round(0.05 + 0.25 * st, 4), latency_rate=round(0.1 + 0.4 * st, 4),
                     max_latency_s=spec.environment.max_latency_s,
                     max_parallel=rng.choice([1, 2, 3]) if rng.random() < st else None)
        elif name == "tool_responses":
            st = dim.strength
            d.update(style=rng.choice(spec.allowed("response_styles")),
                     error_style=rng.choice(ERROR_STYLES) if rng.random() < st else "plain",
                     noise_rate=round(st, 4), noise_fields=1 + round(2 * st), reorder=rng.random() < st,
                     truncate_at=80 if rng.random() < st else None)
        draws[name] = d
    return draws


@dataclass
class Perturbed:
    """What the agent loop needs to run one perturbed episode."""

    task: Task
    env: Environment
    chat_format: str | None
    """The format to render the episode in; None = the run's own."""
    record: dict[str, Any]

    def format(self, default: ChatFormat) -> ChatFormat:
        if self.chat_format is None or self.chat_format == default.name:
            return default
        return get_format(self.chat_format)

    def sampling(self, base: SamplingParams, tokenizer: Any) -> SamplingParams:
        """`base` plus a stop on this format's end-of-message token (the engine stops on the run's own)."""
        if self.chat_format is None:
            return base
        stop = tokenizer.convert_tokens_to_ids(get_format(self.chat_format).end_of_message)
        if stop is None or stop in base.stop_token_ids:
            return base
        return dataclasses.replace(base, stop_token_ids=[*base.stop_token_ids, stop])


def apply_perturbations(task: Task, env: Environment, spec: PerturbSpec, seed: int) -> Perturbed:
    """Perturb one episode of `task` in `env` (a fresh, not yet reset environment)."""
    draws = draw(spec, seed)
    record: dict[str, Any] = {
        "version": RECORD_VERSION, "seed": seed, "spec": spec.model_dump(mode="json"),
        "applied": [{"kind": kind, "seed": d["seed"], "params": {k: v for k, v in d.items() if k != "seed"}}
                    for kind, d in draws.items()],
    }
    inner = env
    if (d := draws.get("environment")) is not None:
        inner = NoisyEnvironment(env, NoiseConfig(seed=d["seed"], failure_rate=d["failure_rate"],
                                                  latency_rate=d["latency_rate"], max_latency_s=d["max_latency_s"]))
    wrapped = PerturbedEnvironment(inner, draws, record, original_gold=task.gold)
    fmt = draws["chat_format"]["format"] if "chat_format" in draws else None
    return Perturbed(task=task.model_copy(update={"gold": None}) if task.gold is not None else task, env=wrapped,
                     chat_format=fmt, record=record)


def replay(record: dict[str, Any], task: Task, env: Environment) -> Perturbed:
    """The same perturbations again, from a trajectory's `perturbations`."""
    if record.get("version") != RECORD_VERSION:
        raise ValueError(f"perturbation record version {record.get('version')!r} is not {RECORD_VERSION}: "
                         "it was written by another forgerl version and cannot be replayed exactly")
    return apply_perturbations(task, env, PerturbSpec.model_validate(record["spec"]), int(record["seed"]))


def episode_seed(task: Task, run_seed: int = 0) -> int:
    """The perturbation seed of a task: every rollout of a group (same task) sees the same scaffold."""
    return zlib.crc32(f"{run_seed}|{task.id}".encode())


RunEpisode = Callable[..., Awaitable[Trajectory]]


def perturbing(run_episode: RunEpisode, spec: PerturbSpec, *, run_seed: int = 0, training_only: bool = True) -> RunEpisode:
    """`run_episode` with perturbations applied first. With `training_only`, episodes whose
    trajectory has no group id (held-out evaluation in train/rollouts.py) stay unperturbed."""

    async def wrapped(engine: Any, chat_format: ChatFormat, env: Environment, task: Task, *,
                      sampling: SamplingParams, trajectory: Trajectory | None = None, **kwargs: Any) -> Trajectory:
        if not spec.active or (training_only and (trajectory is None or trajectory.group_id is None)):
            return await run_episode(engine, chat_format, env, task, sampling=sampling, trajectory=trajectory, **kwargs)
        p = apply_perturbations(task, env, spec, episode_seed(task, run_seed))
        traj = trajectory if trajectory is not None else Trajectory()
        traj.perturbations = p.record
        return await run_episode(engine, p.format(chat_format), p.env, p.task, sampling=p.sampling(sampling, engine.tokenizer),
                                 trajectory=traj, **kwargs)

    return wrapped
