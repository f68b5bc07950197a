"""The run doctor: reads a run's store and metrics and reports what looks wrong, with evidence.

    diagnose(run_dir) -> list[Finding]        a finished or running run directory (post hoc)
    format_findings(findings) -> str          plain text
    LiveDoctor(run_dir, config).observe(step, metrics, trajectories=None) -> new findings
                                              the training loop's hook (doctor.jsonl in the run)

Detectors: doctor/detectors.py; thresholds with their reasons: doctor/thresholds.py; what they
read: doctor/series.py. `forgerl doctor RUN_DIR` is cli/doctor.py.
"""

from __future__ import annotations

from pathlib import Path

from forgerl.doctor.detectors import DETECTORS, run_detectors
from forgerl.doctor.findings import Finding, Severity
from forgerl.doctor.live import DOCTOR_LOG, DoctorLogTail, LiveDoctor, read_doctor_log
from forgerl.doctor.rundir import load_run
from forgerl.doctor.text import format_finding, format_findings
from forgerl.doctor.thresholds import DEFAULT_THRESHOLDS, Thresholds


def diagnose(run_dir: str | Path, *, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> list[Finding]:
    """Every finding on the run in `run_dir`, most severe first. Raises ConfigError (with what to
    do) when the directory is not a run."""
    return run_detectors(load_run(run_dir), thresholds)


def worst_severity(findings: list[Finding]) -> Severity | None:
    """The most severe finding's severity (None for no findings)."""
    for severity in ("critical", "warning", "info"):
        if any(f.severity == severity for f in findings):
            return severity  # type: ignore[return-value]
    return None


__all__ = ["DEFAULT_THRESHOLDS", "DETECTORS", "DOCTOR_LOG", "DoctorLogTail", "Finding", "LiveDoctor", "Severity", "Thresholds",
           "diagnose", "format_finding", "format_findings", "load_run", "read_doctor_log", "worst_severity"]
