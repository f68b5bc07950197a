"""Evaluation of a model on held-out tasks: pass rates with Wilson intervals per group, trajectories
in a store (settings.py: what an evaluation runs with; run.py: the evaluation; the `forgerl eval`
command is forgerl/cli/eval.py). Names are loaded on first use, so the command line can import
`forgerl.eval.settings` without the environment stack."""

from __future__ import annotations

from typing import Any

__all__ = ["EvalReport", "GroupStats", "held_out_tasks", "run_tasks", "summarize", "wilson_interval"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from forgerl.eval import run  # heavy: the agent and environments; settings.py stays light

        return getattr(run, name)
    raise AttributeError(f"module 'forgerl.eval' has no attribute {name!r}")
