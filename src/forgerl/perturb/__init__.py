"""Seeded perturbations of the agent's whole operational space (M2_NOTES §5).

MiniMax found that more tools alone did not make M2 generalize to a new scaffold; perturbing tool
information and the tool set, the system and user prompts, the chat template, the environment and
the tool responses did. One entry point, `apply_perturbations(task, env, spec, seed)`, returns the
wrapped environment (which maps every perturbed call back to the original tools, so verifiers and
gold paths keep working), the chat format to render in and the record kept on the trajectory as
`trajectory.perturbations`; `replay(record, task, env)` rebuilds the same episode.

    spec.py      PerturbSpec (the run config's [perturb] table), held-out scaffolds
    apply.py     draws per episode, apply_perturbations, replay, the run_episode wrapper
    env.py       PerturbedEnvironment: shown tools, prompts, response styles, rate limits
    tools.py     tool plans: rename, describe, renest, add params; split, merge, swap, distractors
    text.py      system and user prompt edits
    responses.py tool-output and error rendering
    evaluate.py  reward per scaffold with Wilson intervals
    show.py      `forgerl perturb show`; cli.py the typer sub-app

Hooking it into training (train/rollouts.py `_episode`), without touching the agent loop:

    if cfg.perturb.active and group_id is not None:          # training rollouts only
        p = apply_perturbations(task, env, cfg.perturb, episode_seed(task, cfg.seed))
        env, task, fmt = p.env, p.task, p.format(run.fmt)
        sampling = p.sampling(sampling, run.engine.tokenizer)
        trajectory.perturbations = p.record
"""

from __future__ import annotations

import importlib
from typing import Any

# Names resolve lazily (PEP 562): `forgerl perturb --help` imports cli/perturb.py, which must not
# pull in the environments through this package.
_EXPORTS = {
    "Perturbed": "apply", "apply_perturbations": "apply", "draw": "apply", "episode_seed": "apply",
    "perturbing": "apply", "replay": "apply",
    "DIMENSIONS": "spec", "HeldOutScaffolds": "spec", "PerturbSpec": "spec", "Scaffold": "spec",
    "held_out_scaffolds": "spec", "scaffold_set": "spec",
}
__all__ = [
    "DIMENSIONS", "HeldOutScaffolds", "PerturbSpec", "Perturbed", "Scaffold", "apply_perturbations", "draw",
    "episode_seed", "held_out_scaffolds", "perturbing", "replay", "scaffold_set",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'forgerl.perturb' has no attribute {name!r}")
    return getattr(importlib.import_module(f"forgerl.perturb.{_EXPORTS[name]}"), name)
