"""`forgerl mtp add`: give a policy multi-token-prediction heads (model/mtp.py) trained on the
`forgerl sft` conversations with the main model frozen, so the built-in engine can draft with them
(speculative decoding) while every main-model weight stays bit for bit what it was."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from forgerl.errors import ConfigError

mtp_app = typer.Typer(help="Multi-token-prediction heads: add them to a policy.", no_args_is_help=True)


@mtp_app.command("add")
def add(
    model: str = typer.Option(..., "--model", help="Policy to extend: `default`, `tiny-random`, a model directory or RUN[:best|:step_N]."),
    out: str = typer.Option(..., "--out", help="Output policy directory (may be the --model directory itself: only "
                            "mtp.safetensors, config.json's MTP fields and forgerl.json's `mtp` record change)."),
    modules: int = typer.Option(1, min=1, help="MTP modules trained first (M2: one)."),
    expand_to: int = typer.Option(3, "--expand-to", min=1, help="Modules after expansion by copying (M2: three)."),
    steps: int = typer.Option(300, min=0, help="Optimizer steps with --modules heads."),
    expand_steps: int = typer.Option(450, "--expand-steps", min=0, help="Optimizer steps after expansion."),
    window: int = typer.Option(32, min=1, help="Attention window of each module (how far back a draft reads)."),
    layers: int = typer.Option(1, min=1, help="Transformer layers per module."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Conversations per step."),
    chunk: int = typer.Option(256, min=1, help="Target positions per conversation per step (a random piece of it)."),
    lr: float = typer.Option(2e-3, help="Peak learning rate of the heads (cosine decay after warm-up)."),
    family: str = typer.Option("tool-reasoning", help="Task family whose scripted-solver conversations train the heads."),
    examples: int = typer.Option(240, min=1, help="Training conversations (verified, as `forgerl sft` makes them)."),
    heldout: int = typer.Option(48, min=1, help="Held-out conversations (seeds training never draws) for the agreement figure."),
    difficulty: str = typer.Option("1,2,3,4", help="Comma-separated difficulty levels."),
    seed: int = typer.Option(0, help="Seed for data, initialisation and batches."),
    threads: int = typer.Option(0, min=0, help="torch threads (0: torch's default)."),
    log_every: int = typer.Option(25, "--log-every", min=1, help="Print the loss per depth every this many steps."),
) -> None:
    """Train MTP heads for a policy (main model frozen) and save it with them; prints the loss per
    depth as it goes and the held-out top-1 agreement of each depth with the main model."""
    from forgerl.train.mtp_build import run_mtp_add  # heavy: torch and transformers, kept out of forgerl --help

    try:
        levels = tuple(int(x) for x in difficulty.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"{difficulty!r} is not a comma-separated list of whole numbers",
                                 param_hint="--difficulty") from None
    command = "forgerl " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["mtp"] else None
    try:
        target = run_mtp_add(model, Path(out), modules=modules, expand_to=expand_to, steps=steps,
                             expand_steps=expand_steps, window=window, layers=layers, batch_size=batch_size, chunk=chunk, lr=lr,
                             family=family, examples=examples, heldout=heldout, difficulty=levels, seed=seed,
                             log_every=log_every, threads=threads, command=command, echo=typer.echo)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc), hint="change the option the message names and run again") from exc
    typer.echo(f"saved the policy with MTP heads to {target}")
