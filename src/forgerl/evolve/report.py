"""The held-out report, after the search: the base and the chosen candidate on the evaluation split.

This is the only place the evaluation split is measured, and it runs once the search has stopped:
its numbers are written as the log's last line (which seals it) and returned, never fed back. Each
success rate has its 95% Wilson interval; the gain has Newcombe's hybrid score interval for a
difference of two proportions (Newcombe 1998, method 10), which treats the two as independent
samples: conservative here, where both ran the same tasks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from forgerl.evolve.log import DecisionLog
from forgerl.evolve.propose import Outcome
from forgerl.evolve.runner import Runner
from forgerl.evolve.space import Candidate
from forgerl.evolve.splits import EVALUATION, Measurement


def newcombe_interval(a: Measurement, b: Measurement) -> tuple[float, float]:
    """95% interval of a.success_rate - b.success_rate from the two Wilson intervals."""
    pa, pb = a.success_rate, b.success_rate
    d = pa - pb
    low = d - math.sqrt((pa - a.ci_low) ** 2 + (b.ci_high - pb) ** 2)
    high = d + math.sqrt((a.ci_high - pa) ** 2 + (pb - b.ci_low) ** 2)
    return low, high


def evaluate_final(runner: Runner, baseline: Outcome, chosen: Outcome, *, steps: int, tasks: int, out: Path,
                   decisions: DecisionLog, also: list[Candidate] | None = None) -> dict[str, Any]:
    """Measure the base, the chosen candidate (and `also`) on `tasks` evaluation-split tasks; log and return it."""
    entries: list[tuple[str, Candidate, Outcome | None]] = [("base", baseline.proposal.candidate, baseline)]
    if chosen is not baseline:
        entries.append(("chosen", chosen.proposal.candidate, chosen))
    for i, candidate in enumerate(also or []):
        if candidate.key() not in {c.key() for _, c, _ in entries}:
            entries.append((f"also-{i}", candidate, None))
    rows: dict[str, Any] = {}
    measured: dict[str, Measurement] = {}
    for name, candidate, outcome in entries:
        result = runner.run(candidate, steps=steps, tasks=tasks, split=EVALUATION, run_dir=out / name)
        m = measured[name] = result.measurement
        rows[name] = {"label": candidate.label() or "base", "candidate": candidate.model_dump(mode="json"),
                      "evaluation": m.as_dict(),
                      "validation": None if outcome is None else outcome.result.measurement.as_dict()}
    report: dict[str, Any] = {"split": EVALUATION, "tasks": tasks, "steps": steps, "rows": rows,
                              "chosen_is_base": chosen is baseline}
    if "chosen" in measured:
        low, high = newcombe_interval(measured["chosen"], measured["base"])
        report["gain"] = {"success_rate": measured["chosen"].success_rate - measured["base"].success_rate,
                          "ci_low": low, "ci_high": high,
                          "mean_reward": measured["chosen"].mean_reward - measured["base"].mean_reward}
    decisions.write("evaluation", note="measured after the search stopped; never used for a decision", **report)
    return report
