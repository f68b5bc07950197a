"""`run_evolve`: the Python API behind `forgerl evolve run`, wiring the real parts around the loop.

The base config is loaded (and its `base_set` overrides applied), the splits are checked disjoint,
the proposer is built from the settings (halving, or a model: opened here and recorded under
OUT/proposer), the runner is ForgerlRunner, the doctor is forgerl.doctor.diagnose. Tests pass their
own runner, proposer and diagnose.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forgerl.evolve.halving import HalvingProposer
from forgerl.evolve.loop import Diagnose, EvolveResult, search
from forgerl.evolve.model_proposer import ModelProposer, open_model_engine
from forgerl.evolve.propose import Proposer
from forgerl.evolve.report import evaluate_final
from forgerl.evolve.runner import ForgerlRunner, Runner
from forgerl.evolve.settings import EvolveSettings, load_settings
from forgerl.evolve.space import nest
from forgerl.evolve.splits import check_disjoint


def run_evolve(settings: EvolveSettings | str | Path | None = None, *, runner: Runner | None = None,
               proposer: Proposer | None = None, diagnose: Diagnose | None = None, use_doctor: bool = True,
               on_outcome: Any = None, **overrides: Any) -> EvolveResult:
    """Search, then (with `settings.evaluate`) report the base and the chosen candidate on the evaluation split."""
    from forgerl.plugins import load_run_plugins  # heavy: pydantic, only when a search starts
    from forgerl.train.config import load_config  # cycle: package train imports much of forgerl

    if not isinstance(settings, EvolveSettings):
        settings = load_settings(settings, **overrides)
    base = load_config(settings.base, **nest(settings.base_set))  # tables merge key by key; defaults derive after
    load_run_plugins(base.plugins)
    out = Path(settings.out)
    check_disjoint(base.env, settings.objective.validation_tasks, settings.objective.evaluation_tasks,
                   list(base.difficulty))
    own_runner = runner is None
    runner = runner or ForgerlRunner(base, concurrency=settings.concurrency)
    proposer = proposer or make_proposer(settings, out)
    if diagnose is None and use_doctor:
        diagnose = doctor()
    try:
        result = search(settings, base, runner, proposer, diagnose=diagnose, out=out, on_outcome=on_outcome)
        if settings.evaluate:
            result.evaluation = evaluate_final(runner, result.baseline, result.incumbent,
                                               steps=settings.budget.steps_per_run,
                                               tasks=settings.objective.evaluation_tasks, out=out / "evaluation",
                                               decisions=result.decisions)
    finally:
        if own_runner:
            runner.close()  # type: ignore[union-attr]
    return result


def make_proposer(settings: EvolveSettings, out: Path) -> Proposer:
    if settings.proposer == "halving":
        return HalvingProposer(settings.halving)
    return ModelProposer(open_model_engine(settings.model), settings.model, store_dir=out / "proposer")


def doctor() -> Diagnose:
    """forgerl.doctor.diagnose (imported when a search starts: it reads run directories, nothing else)."""
    from forgerl.doctor import diagnose  # heavy: the doctor's detectors, only when a search starts

    return diagnose
