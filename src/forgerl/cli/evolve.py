"""`forgerl evolve`: the experiment agent. `run SETTINGS.toml` searches config knobs and scaffolds
(forgerl/evolve), `replay LOG` reruns its kept decisions and checks that they reproduce.

Only options are parsed here; the search is forgerl/evolve/run.py's `run_evolve` (the Python API).
Imports are function-local so `forgerl --help` does not load the agent stack.
"""

from __future__ import annotations

from pathlib import Path

import typer

evolve_app = typer.Typer(help="The experiment agent: propose config and scaffold changes, run short experiments, "
                              "keep what beats the incumbent on a validation split, log every decision.",
                         no_args_is_help=True)


@evolve_app.command("run")
def run_command(
    settings: Path | None = typer.Argument(None, help="Evolve settings TOML (base config, budget, objective, space, "
                                                      "proposer); none: the defaults."),
    out: str | None = typer.Option(None, "--out", help="Evolve directory (decision log, runs). [default: the file's out]"),
    scaffold_only: bool = typer.Option(False, "--scaffold-only", help="No training: measure the base policy in each "
                                       "scaffold (budget.steps_per_run = 0)."),
    max_runs: int | None = typer.Option(None, help="Budget: experiments, the baseline included."),
    steps_per_run: int | None = typer.Option(None, help="Budget: training steps of a full-fidelity run."),
    wall_s: float | None = typer.Option(None, help="Budget: seconds; no run starts after this."),
    proposer: str | None = typer.Option(None, help="halving (offline) or model (\\[model] in the settings)."),
    no_doctor: bool = typer.Option(False, "--no-doctor", help="Do not read trained runs with forgerl doctor."),
) -> None:
    """Search; print each decision; write OUT/decisions.jsonl and, after the search, the evaluation-split report."""
    from rich.console import Console

    from forgerl.evolve.run import run_evolve  # heavy: the agent stack, only when a search runs
    from forgerl.evolve.settings import load_settings  # heavy: pydantic models of the search

    console = Console()
    budget = {k: v for k, v in (("max_runs", max_runs), ("steps_per_run", 0 if scaffold_only else steps_per_run),
                                ("wall_s", wall_s)) if v is not None}
    chosen = load_settings(settings, out=out, proposer=proposer, budget=budget or None)

    def show(outcome) -> None:  # type: ignore[no-untyped-def]
        m = outcome.result.measurement
        console.print(f"[{outcome.index:03d}] {outcome.decision:9s} {outcome.proposal.candidate.label() or 'base'}: "
                      f"{m.success_rate:.3f} [{m.ci_low:.2f}, {m.ci_high:.2f}] n={m.n} ({outcome.proposal.source}) "
                      f"— {outcome.why}", highlight=False, soft_wrap=True)

    result = run_evolve(chosen, use_doctor=not no_doctor, on_outcome=show)
    console.print(f"stopped: {result.stop_reason} ({result.seconds:.0f} s)")
    console.print(f"chosen: {result.incumbent.proposal.candidate.label() or 'base (nothing beat it)'}")
    if result.evaluation is not None:
        for name, row in result.evaluation["rows"].items():
            e = row["evaluation"]
            console.print(f"evaluation split, {name} ({row['label']}): {e['success_rate']:.3f} "
                          f"[{e['ci_low']:.3f}, {e['ci_high']:.3f}] n={e['n']}", highlight=False)
        if "gain" in result.evaluation:
            g = result.evaluation["gain"]
            console.print(f"gain on the evaluation split: {g['success_rate']:+.3f} [{g['ci_low']:+.3f}, {g['ci_high']:+.3f}]")
    console.print(f"decision log: {result.log_path}")


@evolve_app.command("replay")
def replay_command(
    log: Path = typer.Argument(..., help="A decision log (OUT/decisions.jsonl)."),
    index: int | None = typer.Option(None, help="Replay this measured proposal instead of every kept decision."),
    out: str | None = typer.Option(None, "--out", help="Where the reruns go. [default: next to the log, replay/]"),
) -> None:
    """Rerun kept decisions from the log alone; exit 1 if a metric lands outside its tolerance or a decision flips."""
    from forgerl.evolve.replay import replay  # heavy: the agent stack, only when replaying

    checks = replay(log, index=index, out=out)
    for c in checks:
        status = "ok" if c.ok else "MISMATCH"
        typer.echo(f"{status}: [{c.index:03d}] {c.label}: logged {c.recorded:.4f}, replayed {c.replayed:.4f} "
                   f"(tolerance {c.tolerance}); decision {c.decision} -> {c.replayed_decision}")
    if not all(c.ok for c in checks):
        raise typer.Exit(1)
