"""The experiment agent (`forgerl evolve`): it tunes a run's config knobs and the agent's scaffold by
short experiments, keeping only what beats the incumbent on a validation split, and logs every decision.

    space.py          the declared search space: knobs, scaffold choices, candidates, diffs
    splits.py         validation vs evaluation task seeds, and the guardrail between them
    measure.py        a policy under one scaffold on one split (the agent loop, Wilson intervals)
    runner.py         one experiment: train through forgerl.train (or not) and measure
    decide.py         the objective and the keep rule (margin or interval)
    budget.py         runs, steps, wall time; the stop reason
    propose.py        the proposer protocol; halving.py (offline), model_proposer.py (a model)
    loop.py           the search loop; report.py the evaluation-split report after it
    log.py            the JSONL decision log; replay.py reruns kept decisions from it
    settings.py       the evolve TOML; run.py `run_evolve`, the Python API
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run_evolve": "run", "replay": "replay", "EvolveSettings": "settings", "load_settings": "settings",
    "SearchSpace": "space", "Candidate": "space", "ScaffoldChoice": "space", "HalvingProposer": "halving",
    "ModelProposer": "model_proposer", "ForgerlRunner": "runner", "Objective": "decide", "Budget": "budget",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"forgerl.evolve.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'forgerl.evolve' has no attribute {name!r}")
