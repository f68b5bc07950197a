"""The search loop with a fake runner: budget, the split guardrail, halving, the log and its replay."""

from __future__ import annotations

import json

import pytest
from evolve_helpers import FakeRunner, naming_rate

from forgerl.doctor.findings import Finding
from forgerl.evolve.budget import BudgetClock
from forgerl.evolve.decide import Objective, decide
from forgerl.evolve.halving import HalvingProposer, schedule
from forgerl.evolve.log import read_log
from forgerl.evolve.replay import replay
from forgerl.evolve.run import run_evolve
from forgerl.evolve.splits import GuardrailError, Measurement


def records(path, kind):
    return [r for r in read_log(path)[1] if r["kind"] == kind]


def test_halving_schedule_grows_tasks_without_training_and_steps_with_it() -> None:
    assert [(r.candidates, r.steps, r.tasks) for r in schedule(8, 2, 0, 32)] == [(8, 0, 4), (4, 0, 8), (2, 0, 16), (1, 0, 32)]
    assert [(r.candidates, r.steps, r.tasks) for r in schedule(9, 3, 9, 32)] == [(9, 1, 32), (3, 3, 32), (1, 9, 32)]
    assert [(r.candidates, r.tasks) for r in schedule(8, 2, 0, 32, min_tasks=6)][0] == (8, 6)


def test_search_keeps_the_validation_best_and_measures_rungs_as_scheduled(settings_for) -> None:
    rates = {"default": 0.25, "camel": 0.75, "synonym": 0.5, "kebab": 0.625}
    runner = FakeRunner(naming_rate(rates))
    result = run_evolve(settings_for(), runner=runner, use_doctor=False)
    search_calls = [c for c in runner.calls if c[1] == "validation"]
    assert search_calls[0] == ("scaffold[default]", "validation", 0, 32)  # the baseline, at full fidelity
    rungs = [c[3] for c in search_calls[1:]]
    assert rungs == [8, 8, 8, 8, 16, 16, 32]  # 4 candidates at 8 tasks, the best 2 at 16, the best at 32
    drawn = [o.proposal.candidate.scaffold.naming for o in result.history[:4]]
    assert len({o.proposal.candidate.key() for o in result.history[:4]}) == 4
    best = max(drawn, key=rates.get)
    assert result.incumbent.proposal.candidate.scaffold.naming == best != "default"
    assert result.incumbent.decision == "kept"
    assert result.stop_reason == "the halving proposer has nothing more to propose"
    measured = records(result.log_path, "measure")
    assert [r["decision"] for r in measured].count("screened") == 6
    kept = [r for r in measured if r["decision"] == "kept"][0]
    assert kept["diff"]["scaffold"]["naming"] == ["default", best] and f"gain {rates[best] - 0.25:+.3f}" in kept["why"]


def test_the_evaluation_split_never_reaches_a_decision(settings_for) -> None:
    """Validation prefers camel, evaluation synonym: the search follows validation, and the
    evaluation split is measured only after the search stopped (the log's last line)."""
    runner = FakeRunner(naming_rate({"camel": 0.75, "synonym": 0.3}, {"camel": 0.1, "synonym": 0.9}))
    result = run_evolve(settings_for(halving={"candidates": 7}), runner=runner, use_doctor=False)  # the whole space
    splits = [c[1] for c in runner.calls]
    first_eval = splits.index("evaluation")
    assert all(s == "validation" for s in splits[:first_eval]) and all(s == "evaluation" for s in splits[first_eval:])
    assert result.incumbent.proposal.candidate.scaffold.naming == "camel"
    lines = read_log(result.log_path)[1]
    assert [r["kind"] for r in lines][-2:] == ["stop", "evaluation"]
    assert result.evaluation["gain"]["success_rate"] < 0  # reported as measured, even when it is a loss
    with pytest.raises(GuardrailError, match="sealed"):
        result.decisions.write("measure", index=99)


def test_decide_refuses_evaluation_measurements() -> None:
    val = Measurement("validation", 32, 16, 0.5)
    ev = Measurement("evaluation", 32, 30, 0.9)
    with pytest.raises(GuardrailError, match="validation split only"):
        decide(Objective(), ev, val)
    with pytest.raises(GuardrailError):
        decide(Objective(), val, ev)


def test_a_runner_that_measures_the_wrong_split_stops_the_search(settings_for) -> None:
    class Cheating(FakeRunner):
        def run(self, candidate, *, steps, tasks, split, run_dir):
            return super().run(candidate, steps=steps, tasks=tasks, split="evaluation", run_dir=run_dir)

    with pytest.raises(GuardrailError):
        run_evolve(settings_for(), runner=Cheating(naming_rate({})), use_doctor=False)


def test_interval_rule_needs_a_gain_beyond_chance() -> None:
    inc = Measurement("validation", 32, 8, 0.25, ci_low=0.13, ci_high=0.42)
    small = Measurement("validation", 32, 12, 0.37, ci_low=0.23, ci_high=0.55)
    big = Measurement("validation", 32, 24, 0.75, ci_low=0.58, ci_high=0.87)
    assert decide(Objective(), small, inc).kept  # the margin rule (0): any gain
    assert not decide(Objective(rule="interval"), small, inc).kept
    assert decide(Objective(rule="interval"), big, inc).kept
    assert not decide(Objective(margin=0.2), small, inc).kept
    assert decide(Objective(direction="min"), inc, small).kept


@pytest.mark.parametrize(("budget", "reason", "runs"), [
    ({"max_runs": 3}, "run budget reached: 3 of max_runs 3", 3),
    ({"max_runs": 40, "wall_s": 25}, "wall-time budget reached", 3),
    ({"max_runs": 40, "steps_per_run": 4, "max_total_steps": 7}, "step budget reached", 4),  # 4 + 1 + 1 + 1
])
def test_budget_stops_the_search_with_a_reason(settings_for, budget, reason, runs) -> None:
    settings = settings_for(budget=budget, evaluate=False)
    ticks = iter(range(0, 10_000, 10))  # every clock read is 10 s later
    clock = BudgetClock(settings.budget, clock=lambda: next(ticks))
    from forgerl.evolve.loop import search
    from forgerl.evolve.runner import train_config

    runner = FakeRunner(naming_rate({"camel": 0.75}))
    result = search(settings, train_config({}), runner, HalvingProposer(settings.halving), diagnose=None,
                    out=settings_out(settings), clock=clock)
    assert reason in result.stop_reason
    assert len(runner.calls) == runs == clock.runs
    assert records(result.log_path, "stop")[0]["reason"] == result.stop_reason


def settings_out(settings):
    from pathlib import Path

    return Path(settings.out)


def test_doctor_findings_seed_the_next_rung(settings_for) -> None:
    settings = settings_for(budget={"steps_per_run": 4}, space={"knobs": {"optim.lr": [1e-4, 3e-4]}, "scaffold": {}},
                            halving={"candidates": 2})
    finding = Finding(code="entropy_collapse", severity="warning", title="entropy fell", suggestion="raise eps_high",
                      config_change={"loss.eps_high": 0.5})
    seen = []

    def diagnose(run_dir):
        seen.append(run_dir)
        return [finding]

    runner = FakeRunner(lambda c, split, steps: 0.5 if c.config.get("loss.eps_high") else 0.25, trained=True)
    result = run_evolve(settings, runner=runner, diagnose=diagnose)
    measured = records(result.log_path, "measure")
    doctor = [r for r in measured if "doctor:entropy_collapse" in r["source"]]
    assert doctor and doctor[0]["candidate"]["config"]["loss.eps_high"] == 0.5
    assert doctor[0]["reason"].startswith("doctor: entropy fell")
    assert measured[0]["evidence"]["findings"][0]["code"] == "entropy_collapse"
    assert len(seen) == len(measured)  # every trained run was read


def test_a_failing_doctor_is_logged_and_the_search_goes_on(settings_for) -> None:
    def broken(run_dir):
        raise RuntimeError("no metrics")

    result = run_evolve(settings_for(budget={"steps_per_run": 1, "max_runs": 2}, evaluate=False),
                        runner=FakeRunner(naming_rate({}), trained=True), diagnose=broken)
    assert records(result.log_path, "measure")[0]["evidence"]["doctor_error"] == "RuntimeError: no metrics"


def test_log_replays_kept_decisions_and_catches_a_drift(settings_for, tmp_path) -> None:
    rate = naming_rate({"camel": 0.75, "synonym": 0.5})
    result = run_evolve(settings_for(objective={"tolerance": 0.05}, halving={"candidates": 7}), runner=FakeRunner(rate),
                        use_doctor=False)
    header, _ = read_log(result.log_path)
    assert header["base_config"]["env"] == "tool-reasoning" and header["settings"]["space"]["scaffold"]["naming"]
    checks = replay(result.log_path, runner=FakeRunner(rate), out=tmp_path / "replay")
    assert checks and all(c.ok for c in checks)
    assert {c.decision for c in checks} == {"kept", "baseline"}  # the kept one and the incumbent it beat
    drifted = replay(result.log_path, runner=FakeRunner(naming_rate({"camel": 0.6, "synonym": 0.5})))
    assert not all(c.ok for c in drifted)
    flipped = replay(result.log_path, runner=FakeRunner(naming_rate({"camel": 0.25})), index=None)
    assert any(c.replayed_decision == "rejected" for c in flipped)


def test_log_lines_are_json_with_seeds_and_diffs(settings_for) -> None:
    result = run_evolve(settings_for(), runner=FakeRunner(naming_rate({"camel": 0.75})), use_doctor=False)
    for line in result.log_path.read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "measure":
            assert set(record) >= {"candidate", "diff", "evidence", "decision", "why", "steps", "tasks", "tolerance"}
            assert record["evidence"]["measurement"]["split"] == "validation"
            assert record["evidence"]["measurement"]["seeds"]
