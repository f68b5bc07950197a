"""The doctor inside the training loop: after each step, the detectors run on the metrics so far
(and, when the loop passes them, the step's trajectories) and each condition that newly shows is
returned once and appended to the run's `doctor.jsonl`, so the live table can show it and the
report can list it.

Cheap by construction: it keeps the series in memory (a few dozen numbers per step, a few example
ids) and never reads the store; the detectors run over that series, which costs microseconds per
step against a training step of seconds.

A condition is reported again only when it becomes more severe (a warning that turns critical).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from forgerl.doctor.detectors import SEVERITY_ORDER, run_detectors
from forgerl.doctor.findings import Finding
from forgerl.doctor.series import RunSeries, step_stats
from forgerl.doctor.thresholds import DEFAULT_THRESHOLDS, Thresholds
from forgerl.types import Trajectory

DOCTOR_LOG = "doctor.jsonl"
"""In the run directory: one JSON object per live finding, `{"step": N, "finding": {...}}`."""


class LiveDoctor:
    """`observe(step, metrics, trajectories=None)` after each training step -> the findings new at
    this step (warnings and criticals; information is left to the post-hoc report)."""

    def __init__(self, run_dir: str | Path | None = None, config: Mapping[str, Any] | None = None, *,
                 thresholds: Thresholds = DEFAULT_THRESHOLDS, min_severity: str = "warning") -> None:
        self.path = Path(run_dir) / DOCTOR_LOG if run_dir is not None else None
        self.series = RunSeries(config=dict(config or {}))
        self.thresholds = thresholds
        self.min_rank = SEVERITY_ORDER[min_severity]
        self.failed = False
        """Set by the training loop when observe raised: it is then off for the run."""
        self.reported: dict[str, int] = {}  # code -> the most severe rank reported so far
        if run_dir is not None:  # a resumed run: what it already reported is not reported again
            for _, finding in read_doctor_log(run_dir):
                rank = SEVERITY_ORDER[finding.severity]
                self.reported[finding.code] = min(rank, self.reported.get(finding.code, rank))

    def load_history(self, metrics: Iterable[tuple[int, str, float]]) -> None:
        """The metrics of the steps before this one (a resumed run's, from its store), read once."""
        for step, name, value in metrics:
            self.series.add_step(step, {name: value})

    def observe(self, step: int, metrics: Mapping[str, float],
                trajectories: Iterable[Trajectory] | None = None) -> list[Finding]:
        self.series.add_step(step, {k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        if trajectories is not None:
            stats, examples = step_stats(trajectories, trainer_version=step - 1)
            self.series.add_step(step, stats)
            self.series.add_examples(step, examples)
        new: list[Finding] = []
        for finding in run_detectors(self.series, self.thresholds):
            rank = SEVERITY_ORDER[finding.severity]
            if rank > self.min_rank or rank >= self.reported.get(finding.code, len(SEVERITY_ORDER)):
                continue
            self.reported[finding.code] = rank
            new.append(finding)
        if new and self.path is not None:
            self._record(step, new)
        return new

    def _record(self, step: int, findings: list[Finding]) -> None:
        with self.path.open("a", encoding="utf-8") as f:  # type: ignore[union-attr]
            for finding in findings:
                f.write(json.dumps({"step": step, "finding": finding.model_dump(mode="json")}) + "\n")
            f.flush()
            os.fsync(f.fileno())


class DoctorLogTail:
    """The findings appended to a run's doctor.jsonl since the last call: what the live table
    prints under its row (it reads only the new bytes)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / DOCTOR_LOG
        self.offset = self.path.stat().st_size if self.path.is_file() else 0  # a resumed run's are old news

    def new(self) -> list[tuple[int, Finding]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        complete = data[:data.rfind(b"\n") + 1]  # a line being written is read next time
        self.offset += len(complete)
        return _parse(complete.decode("utf-8", errors="replace").splitlines())


def read_doctor_log(run_dir: str | Path) -> list[tuple[int, Finding]]:
    """The live findings a run recorded, in order ((step, finding)); [] when none. A line a crash
    cut short is skipped."""
    path = Path(run_dir) / DOCTOR_LOG
    if not path.is_file():
        return []
    return _parse(path.read_text(encoding="utf-8", errors="replace").splitlines())


def _parse(lines: list[str]) -> list[tuple[int, Finding]]:
    out: list[tuple[int, Finding]] = []
    for line in lines:
        try:
            record = json.loads(line)
            out.append((int(record["step"]), Finding.model_validate(record["finding"])))
        except (ValueError, KeyError, TypeError):
            continue
    return out
