"""The experiment agent's loop (`forgerl evolve`): propose, run, read, decide, log.

The baseline (the base config in the default scaffold) is measured first and becomes the incumbent.
Then, until the budget or the proposer runs out: the proposer proposes, each proposal runs as its own
experiment (evolve/runner.py) in `OUT/runs/NNN`, the doctor reads each trained run, and a proposal
measured at full fidelity replaces the incumbent only if it beats it on the validation split
(evolve/decide.py). Every step is a line of `OUT/decisions.jsonl` (evolve/log.py). When the search is
over, and only then, the base and the chosen candidate are measured on the evaluation split and that
report closes the log (evolve/report.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgerl.doctor.findings import Finding
from forgerl.evolve.budget import BudgetClock
from forgerl.evolve.decide import Objective, decide
from forgerl.evolve.log import DecisionLog
from forgerl.evolve.propose import Outcome, Proposal, Proposer, SearchState
from forgerl.evolve.runner import Runner
from forgerl.evolve.settings import EvolveSettings
from forgerl.evolve.space import Candidate, diff
from forgerl.evolve.splits import VALIDATION, VALIDATION_SEED_BASE, Measurement, for_decisions

if TYPE_CHECKING:
    from forgerl.train.config import TrainConfig

log = logging.getLogger(__name__)
Diagnose = Callable[[Path], list[Finding]]


@dataclass
class EvolveResult:
    baseline: Outcome
    incumbent: Outcome
    history: list[Outcome]
    stop_reason: str
    log_path: Path
    decisions: DecisionLog
    """The open log: the evaluation report is its last line."""
    evaluation: dict[str, Any] | None = None
    seconds: float = 0.0


def search(settings: EvolveSettings, base: TrainConfig, runner: Runner, proposer: Proposer, *,
           diagnose: Diagnose | None, out: Path, clock: BudgetClock | None = None,
           on_outcome: Callable[[Outcome], None] | None = None) -> EvolveResult:
    """The search itself (the evaluation-split report is evolve/report.py's, after this returns)."""
    from forgerl.train.config import public_config  # cycle: package train imports much of forgerl; only when searching

    clock = clock or BudgetClock(settings.budget)
    base_data = public_config(base)
    decisions = DecisionLog(out / "decisions.jsonl", header(settings, base_data, proposer.name))
    budget, objective = settings.budget, settings.objective
    runs = iter(range(10**9))

    def run(proposal: Proposal, incumbent: Outcome | None) -> Outcome:
        index = next(runs)
        clock.spend(proposal.steps)
        result = runner.run(proposal.candidate, steps=proposal.steps, tasks=proposal.tasks, split=VALIDATION,
                            run_dir=out / "runs" / f"{index:03d}")
        for_decisions(result.measurement)  # a runner that measured anything else stops the search here
        findings, doctor_error = read_doctor(diagnose, result.run_dir)
        full = proposal.steps == budget.steps_per_run and proposal.tasks == objective.validation_tasks
        decision, why = judge(objective, full, result.measurement, incumbent)
        outcome = Outcome(proposal, result, findings, decision, why, index)
        record(decisions, outcome, base_data, objective, doctor_error, incumbent)
        if on_outcome is not None:
            on_outcome(outcome)
        return outcome

    baseline = run(Proposal(Candidate(), budget.steps_per_run, objective.validation_tasks, "baseline"), None)
    state = SearchState(base_data, settings.space, objective, budget, baseline)
    stop: str | None = None
    while stop is None:
        batch = proposer.propose(state)
        for rejection in batch.rejections:
            decisions.write("reject", source=rejection.source, why=rejection.why, raw=rejection.raw[:2000])
        for proposal in batch.proposals:
            if (stop := clock.stop_reason(proposal.steps)) is not None:
                break
            outcome = run(proposal, state.incumbent)
            state.history.append(outcome)
            if outcome.decision == "kept":
                state.incumbent = outcome
        if stop is None and batch.done:
            stop = f"the {proposer.name} proposer has nothing more to propose"
        stop = stop or clock.stop_reason()
    decisions.write("stop", reason=stop, runs=clock.runs, steps=clock.steps, seconds=round(clock.elapsed(), 1),
                    incumbent_index=state.incumbent.index)
    return EvolveResult(baseline, state.incumbent, state.history, stop, decisions.path, decisions,
                        seconds=clock.elapsed())


def judge(objective: Objective, full: bool, measurement: Measurement, incumbent: Outcome | None) -> tuple[str, str]:
    """(decision, why): the first measurement is the baseline; a lower-fidelity one only screens."""
    if incumbent is None:
        return "baseline", "the base config in the default scaffold: the first incumbent"
    if not full:
        return "screened", f"measured at lower fidelity ({measurement.n} tasks), not compared with the incumbent"
    verdict = decide(objective, measurement, incumbent.result.measurement)
    return ("kept" if verdict.kept else "rejected"), verdict.why


def record(decisions: DecisionLog, o: Outcome, base_data: dict[str, Any], objective: Objective,
           doctor_error: str | None, incumbent: Outcome | None) -> None:
    """The outcome's log line: the proposal and its diff against the base, the evidence, the decision and why."""
    p, r = o.proposal, o.result
    decisions.write("measure", index=o.index, source=p.source, reason=p.reason, candidate=p.candidate.model_dump(mode="json"),
                    label=p.candidate.label(), diff=diff(base_data, p.candidate), steps=p.steps, tasks=p.tasks,
                    run_dir=None if r.run_dir is None else str(r.run_dir), seconds=round(r.seconds, 2),
                    evidence={"measurement": r.measurement.as_dict(), "metrics": r.metrics,
                              "findings": [f.model_dump(mode="json") for f in o.findings], "doctor_error": doctor_error},
                    decision=o.decision, why=o.why, incumbent_index=None if incumbent is None else incumbent.index,
                    tolerance=objective.tolerance)


def read_doctor(diagnose: Diagnose | None, run_dir: Path | None) -> tuple[list[Finding], str | None]:
    """The doctor's findings on a trained run ([] when nothing was trained). The doctor is advisory:
    if it fails, the search goes on and the log records why."""
    if diagnose is None or run_dir is None:
        return [], None
    try:
        return list(diagnose(run_dir)), None
    except Exception as exc:  # noqa: BLE001 — a broken diagnosis must not lose the experiment's measurement
        log.warning("the doctor failed on %s: %s", run_dir, exc)
        return [], f"{type(exc).__name__}: {exc}"


def header(settings: EvolveSettings, base_data: dict[str, Any], proposer: str) -> dict[str, Any]:
    """What a replay needs, with nothing else: the base config, the space, the objective, the budget, the splits."""
    return {"base_config": base_data, "settings": settings.model_dump(mode="json"), "proposer": proposer,
            "splits": {"validation_seed_base": VALIDATION_SEED_BASE, "evaluation": "HELD_OUT_SEED_BASE + i"},
            "concurrency": settings.concurrency}
