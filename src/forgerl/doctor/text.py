"""Findings as plain text (the report, the live table's lines, `forgerl doctor` without rich)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from forgerl.doctor.findings import Finding

MAX_EVIDENCE_CHARS = 300


def format_finding(finding: Finding, *, evidence: bool = True) -> str:
    """One finding: severity, code and title, then (optionally) steps, evidence, examples, suggestion."""
    lines = [f"[{finding.severity.upper()}] {finding.code}: {finding.title}"]
    if not evidence:
        return lines[0]
    if finding.steps:
        lines.append(f"  steps: {_short(finding.steps)}")
    for key, value in finding.evidence.items():
        lines.append(f"  {key}: {_short(value)}")
    if finding.trajectory_ids:
        lines.append(f"  examples: {', '.join(finding.trajectory_ids)}")
    if finding.suggestion:
        lines.append(f"  suggestion: {finding.suggestion}")
    if finding.config_change:
        lines.append("  config: " + " ".join(f"--set {k}={json.dumps(v)}" for k, v in finding.config_change.items()))
    return "\n".join(lines)


def format_findings(findings: Sequence[Finding]) -> str:
    """A plain-text report of the findings (most severe first, as `diagnose` returns them)."""
    if not findings:
        return "no findings: nothing in this run looks wrong to the doctor"
    counts = {s: sum(f.severity == s for f in findings) for s in ("critical", "warning", "info")}
    head = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return f"{len(findings)} finding(s): {head}\n\n" + "\n\n".join(format_finding(f) for f in findings)


def _short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= MAX_EVIDENCE_CHARS else text[:MAX_EVIDENCE_CHARS - 3] + "..."
