"""The run doctor: reads a run's store and metrics and reports what looks wrong, with evidence."""

from forgerl.doctor.findings import Finding, Severity

__all__ = ["Finding", "Severity"]
