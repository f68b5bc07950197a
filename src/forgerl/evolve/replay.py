"""`forgerl evolve replay LOG`: rerun kept decisions from the log alone and check they reproduce.

For each kept decision (or the one at `index`), the candidate and the incumbent it beat are measured
again exactly as logged (same base config, steps, validation tasks, seeds) and each metric must land
within the logged tolerance of the logged value, and the decision must come out the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgerl.errors import ConfigError
from forgerl.evolve.decide import Objective, decide
from forgerl.evolve.log import read_log
from forgerl.evolve.runner import ForgerlRunner, Runner, train_config
from forgerl.evolve.space import Candidate
from forgerl.evolve.splits import VALIDATION, Measurement


@dataclass
class ReplayCheck:
    index: int
    label: str
    recorded: float
    replayed: float
    tolerance: float
    decision: str
    replayed_decision: str

    @property
    def ok(self) -> bool:
        return abs(self.replayed - self.recorded) <= self.tolerance + 1e-12 and self.decision == self.replayed_decision


def replay(log_path: str | Path, *, index: int | None = None, runner: Runner | None = None,
           out: str | Path | None = None) -> list[ReplayCheck]:
    """Checks for the kept decisions of the log at `log_path` (or the measured proposal `index`)."""
    header, records = read_log(log_path)
    measured = {r["index"]: r for r in records if r.get("kind") == "measure"}
    if index is not None:
        if index not in measured:
            raise ConfigError(f"{log_path} has no measured proposal {index}; it has {sorted(measured)}")
        targets = [measured[index]]
    else:
        targets = [r for r in measured.values() if r["decision"] == "kept"]
        if not targets:
            raise ConfigError(f"{log_path} has no kept decision to replay (nothing beat the baseline); "
                              "pass --index N to replay any measured proposal")
    objective = Objective.model_validate(header["settings"]["objective"])
    out = Path(out) if out is not None else Path(log_path).parent / "replay"
    runner = runner or _runner(header)
    cache: dict[int, Measurement] = {}

    def rerun(i: int) -> Measurement:
        if i not in cache:
            r = measured[i]
            cache[i] = runner.run(Candidate.model_validate(r["candidate"]), steps=r["steps"], tasks=r["tasks"],
                                  split=VALIDATION, run_dir=out / f"{i:03d}").measurement
        return cache[i]

    checks = []
    for record in targets:
        value = rerun(record["index"]).value(objective.metric)
        recorded = Measurement.from_dict(record["evidence"]["measurement"]).value(objective.metric)
        replayed_decision = record["decision"]
        if record["decision"] in ("kept", "rejected") and record.get("incumbent_index") is not None:
            kept = decide(objective, rerun(record["index"]), rerun(record["incumbent_index"])).kept
            replayed_decision = "kept" if kept else "rejected"
            inc = measured[record["incumbent_index"]]
            checks.append(_check(inc, rerun(inc["index"]).value(objective.metric), objective, record))
        checks.append(ReplayCheck(record["index"], record["label"] or "base", recorded, value, record["tolerance"],
                                  record["decision"], replayed_decision))
    return checks


def _check(incumbent: dict[str, Any], value: float, objective: Objective, by: dict[str, Any]) -> ReplayCheck:
    recorded = Measurement.from_dict(incumbent["evidence"]["measurement"]).value(objective.metric)
    label = f"incumbent of {by['index']}: {incumbent['label'] or 'base'}"
    return ReplayCheck(incumbent["index"], label, recorded, value, by["tolerance"], incumbent["decision"],
                       incumbent["decision"])


def _runner(header: dict[str, Any]) -> Runner:
    from forgerl.plugins import load_run_plugins  # heavy: pydantic, only when replaying for real

    base = train_config(header["base_config"])
    load_run_plugins(base.plugins)
    return ForgerlRunner(base, concurrency=int(header.get("concurrency", 16)))
