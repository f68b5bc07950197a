"""Helpers shared by the perturbation tests: a gold-replaying scripted policy run through the real
agent loop (parsing, argument checks, tool execution, reward) under a perturbation."""

from __future__ import annotations

import asyncio

from forgerl.agent.loop import run_episode
from forgerl.chat import get_format
from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.base import make_env, sample_task
from forgerl.envs.noise import GoldReplayWithRetries
from forgerl.perturb import PerturbSpec, apply_perturbations
from forgerl.perturb.apply import Perturbed
from forgerl.types import Trajectory

NO_HELD_OUT = {"chat_formats": [], "naming_styles": [], "response_styles": []}


def everything(probability: float = 1.0, strength: float = 1.0, **overrides: object) -> PerturbSpec:
    """Every dimension on, nothing held out (so every value can be drawn)."""
    return PerturbSpec.uniform(probability, strength, held_out=NO_HELD_OUT, **overrides)


def perturbed(family: str, seed: int, spec: PerturbSpec) -> Perturbed:
    return apply_perturbations(sample_task(family, seed), make_env(family, seed), spec, seed)


def play_gold(tokenizer, p: Perturbed, base_format: str = "minimax_m2") -> tuple[Trajectory, ScriptedEngine]:
    """The perturbed gold path, written by a scripted engine in the episode's chat format, retrying
    injected failures, through `run_episode`."""
    fmt = p.format(get_format(base_format))
    p.env.reset(p.task)
    policy = GoldReplayWithRetries(p.env, p.env.gold_solution(p.task), fmt.render_assistant_body)
    engine = ScriptedEngine(tokenizer, [policy], cycle=True, max_context=16384)
    sampling = p.sampling(SamplingParams(max_tokens=4000), tokenizer)
    trajectory = Trajectory(perturbations=p.record)
    traj = asyncio.run(run_episode(engine, fmt, p.env, p.task, sampling=sampling, max_turns=40,
                                   max_total_tokens=16384, trajectory=trajectory))
    return traj, engine
