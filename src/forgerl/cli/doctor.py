"""`forgerl doctor RUN_DIR`: what looks wrong in a run, with evidence and a suggested change.

Exit status: 0 when nothing is a warning or worse (information may be listed), 1 when a warning or
a critical finding is reported, 2 when RUN_DIR is not a run (the CLI's user-error status). With
`--json`, the findings as a JSON list (each the fields of forgerl.doctor.Finding) on stdout.
The work is forgerl/doctor (`diagnose`); the live warnings a run recorded (doctor.jsonl) are listed
after the diagnosis.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

EXIT_FINDINGS = 1
"""A warning or critical finding: scripts (and CI) can gate on a healthy run."""


def doctor(
    run_dir: Path = typer.Argument(..., help="Run directory of a `forgerl train` run (holds store.sqlite)."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON (a list of objects)."),
) -> None:
    """Diagnose a run: entropy collapse, IS-ratio spikes, train/inference mismatch, stale weights,
    staleness, groups without signal, truncation and format errors, held-out falling, reward
    hacking, MoE imbalance, throughput. Exit 0: nothing >= warning; 1: findings; 2: not a run."""
    from forgerl.doctor import (  # heavy: the doctor imports the store and the types, kept out of forgerl --help
        diagnose,
        format_finding,
        read_doctor_log,
        worst_severity,
    )

    findings = diagnose(run_dir)  # ConfigError -> cli/errors.py: error + hint, exit 2
    if as_json:
        typer.echo(json.dumps([f.model_dump(mode="json") for f in findings], indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console()
        if not findings:
            console.print(f"[green]no findings[/]: nothing in {run_dir} looks wrong to the doctor")
        else:
            table = Table(title=f"forgerl doctor: {run_dir}", show_lines=False)
            for column in ("severity", "code", "finding", "steps"):
                table.add_column(column)
            colour = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
            for f in findings:
                steps = ", ".join(map(str, f.steps[:8])) + (" ..." if len(f.steps) > 8 else "")
                table.add_row(f"[{colour[f.severity]}]{f.severity}[/]", f.code, f.title, steps)
            console.print(table)
            for f in findings:
                console.print()
                console.print(format_finding(f), markup=False, highlight=False, soft_wrap=True)
        live = read_doctor_log(run_dir)
        if live:
            console.print()
            console.print(f"live warnings recorded during the run ({len(live)}, doctor.jsonl):")
            for step, f in live:
                console.print(f"  step {step}: {format_finding(f, evidence=False)}", markup=False, highlight=False)
    if worst_severity(findings) in ("warning", "critical"):
        raise typer.Exit(EXIT_FINDINGS)
