"""`forgerl pretrain`: next-token pre-training of a policy on the project's own offline corpus
(forgerl/pretrain: standard-library code, synthetic reading tasks, perturbed episodes), the stage
before `forgerl sft` that teaches the policy to read its context (issue 20)."""

from __future__ import annotations

import math

import typer

from forgerl.errors import ConfigError

DEFAULT_STEPS = 1000


def pretrain(
    out: str = typer.Option(..., "--out", help="Run directory: settings, loss curve (loss.jsonl) and checkpoints; "
                            "the newest checkpoint is the model (`--model DIR`, `forgerl sft --init DIR`)."),
    tokens: int | None = typer.Option(None, min=1, help="Train on this many tokens (rounded up to whole steps)."),
    steps: int | None = typer.Option(None, min=1, help=f"Optimizer steps (default {DEFAULT_STEPS}; or give --tokens)."),
    seq_len: int = typer.Option(512, "--seq-len", min=16, help="Tokens per packed row."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Rows per step."),
    lr: float = typer.Option(2e-3, min=0.0, help="Peak learning rate (linear warm-up, cosine decay to 0)."),
    warmup: int = typer.Option(100, min=1, help="Warm-up steps."),
    seed: int = typer.Option(0, min=0, max=99, help="Seed of the initial weights and of the corpus."),
    init: str = typer.Option("tiny-random", help="Model to start from: `tiny-random` (the embedded architecture, "
                             "random weights), `tiny-random-digits` (the same on the digit-group tokenizer, "
                             "docs/reading.md) or a model directory."),
    mix: str = typer.Option("code=0.3,synthetic=0.4,episodes=0.3", help="Share of the tokens per source "
                            "(name=weight,...; sources: code, synthetic, episodes, repeat, numbers)."),
    checkpoint_every: int = typer.Option(100, "--checkpoint-every", min=1, help="Checkpoint every this many steps."),
    keep_checkpoints: int = typer.Option(2, "--keep-checkpoints", min=1, help="How many of the newest checkpoints to keep."),
    stop_at: int | None = typer.Option(None, "--stop-at", min=1, help="End this session after this step (with a "
                                       "checkpoint); continue later with --resume."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where its newest checkpoint "
                                "left it (pass the options it started with)."),
    threads: int = typer.Option(0, min=0, help="torch threads (0: torch's default)."),
) -> None:
    """Pre-train a policy from random weights on the project's offline corpus; prints the loss per
    source every 10 steps."""
    if tokens is not None and steps is not None:
        raise typer.BadParameter("give --tokens or --steps, not both", param_hint="--tokens")
    import torch  # heavy: only when the command runs
    from pydantic import ValidationError

    from forgerl.pretrain.config import PretrainConfig  # heavy: pydantic model of the run, kept out of --help
    from forgerl.pretrain.corpus import parse_mix  # heavy: the corpus sources import the environments
    from forgerl.pretrain.run import run_pretrain  # heavy: torch and transformers

    if threads:
        torch.set_num_threads(threads)
    total = math.ceil(tokens / (batch_size * seq_len)) if tokens is not None else steps or DEFAULT_STEPS
    shares = parse_mix(mix)
    try:
        config = PretrainConfig(steps=total, seq_len=seq_len, batch_size=batch_size, lr=lr, warmup=warmup, seed=seed,
                                init=init, mix=shares, checkpoint_every=checkpoint_every,
                                keep_checkpoints=keep_checkpoints)
    except ValidationError as exc:  # pydantic's checks on a value typer let through (e.g. --lr 0)
        raise ConfigError(str(exc), hint="change the option the message names") from None
    model = run_pretrain(config, out, resume=resume, stop_at=stop_at)
    print(f"model: {model} (load it with --model {out})")
