"""What `forgerl train` and `forgerl sft` do, with a live rich display (kept out of the loop itself)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgerl.train.config import PRE_GROUPED_NAME, TrainConfig, dump_config, load_config, migrate_run_config

if TYPE_CHECKING:
    from forgerl.perturb.spec import PerturbSpec

LIVE_COLUMNS = (("rollout/reward", "reward"), ("rollout/pass_rate", "pass"), ("eval/reward", "eval"),
                ("train/loss", "loss"), ("train/entropy", "entropy"), ("mismatch/mean_abs_logprob", "|Δlogp|"),
                ("time/rollout_s", "rollout s"), ("time/train_s", "train s"))


def run_train(config_path: str | None = None, *, resume: bool = False, set_values: tuple[str, ...] = (),
              print_only: bool = False, plugins: tuple[str, ...] = (), **overrides: Any) -> None:
    """`forgerl train`: resolve and check everything (config, family, chat format, model, run
    directory) before the model is loaded or the run directory made; a start that fails before
    anything was recorded removes the run directory it made. Errors propagate to the CLI's one
    error style (forgerl/cli/errors.py); Ctrl-C keeps its own message and exit status 130."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    config = (_resume_config(console, config_path, overrides, set_values) if resume
              else load_config(config_path, set_values=set_values, **overrides))
    if plugins:  # --plugin adds to the config's list, so config.toml records what the run needs
        config.plugins = list(dict.fromkeys([*config.plugins, *plugins]))
    if print_only:
        print(dump_config(config), end="")
        return
    from forgerl.plugins import load_run_plugins

    load_run_plugins(config.plugins)
    preflight_train(config, resume=resume)

    from forgerl.rollout.train import (
        run_training as train,  # sync or windowed-FIFO, from config.rollout.mode
    )
    from forgerl.train.report import write_report

    console.print(f"[bold]forgerl train[/]: model={config.model} env={config.env} difficulty={config.difficulty} "
                  f"loss={config.loss.name} steps={config.steps} groups={config.groups_per_step}x{config.group_size} "
                  f"run_dir={config.run_dir}{' (resume)' if resume else ''}")
    header = Table(show_header=True, header_style="bold", box=None)
    header.add_column("step", justify="right")
    for _, label in LIVE_COLUMNS:
        header.add_column(label, justify="right")
    console.print(header)
    start = time.perf_counter()

    def show(step: int, metrics: dict[str, float]) -> None:
        row = Table(show_header=False, box=None)
        row.add_column(justify="right")
        for _ in LIVE_COLUMNS:
            row.add_column(justify="right")
        row.add_row(str(step), *(f"{metrics[k]:.3f}" if k in metrics else "" for k, _ in LIVE_COLUMNS))
        console.print(row)

    from forgerl.train.interrupt import EXIT_INTERRUPTED, TrainingInterrupted

    made_run_dir = not Path(config.run_dir).exists()
    try:
        result = train(config, resume=resume, on_step=show)
    except TrainingInterrupted as exc:  # SIGINT/SIGTERM: checkpointed, status interrupted; say how to resume
        write_report(config.run_dir)
        Console(stderr=True).print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except BaseException:
        if made_run_dir:
            remove_unrecorded_run(Path(config.run_dir))
        raise
    report = write_report(config.run_dir)
    evals = ", ".join(f"step {s}: {r:.3f}" for s, r in result.eval_rewards)
    console.print(f"held-out reward: {evals}")
    console.print(f"done in {time.perf_counter() - start:.0f} s; report: {report}")


def preflight_train(config: TrainConfig, *, resume: bool) -> None:
    """Everything `forgerl train` can check without loading the model or creating the run directory."""
    from forgerl.cli.preflight import check_chat_format, check_env, check_model, check_new_run_dir
    from forgerl.model.loading import resolve_device

    check_env(config.env, config.difficulty)
    check_chat_format(config.chat_format)
    check_model(config.model)
    resolve_device(config.device)
    from forgerl.rollout.episode import check_episode_features

    check_episode_features(config)
    if not resume:
        check_new_run_dir(config.run_dir)


def remove_unrecorded_run(run_dir: Path) -> bool:
    """Remove a run directory this command made when the run recorded nothing (no checkpoint, no
    metrics): a failed start must not leave a dead run that blocks the corrected command. Returns
    whether it was removed; a directory that cannot be read as a store is kept."""
    import shutil
    import sqlite3

    if not run_dir.is_dir():
        return False
    checkpoints = run_dir / "checkpoints"
    if checkpoints.is_dir() and any(checkpoints.iterdir()):
        return False
    store = run_dir / "store.sqlite"
    if store.exists():
        try:
            with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1) as conn:
                tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if "metrics" in tables and conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]:
                    return False
        except sqlite3.Error:
            return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


def _resume_config(console: Any, config_path: str | None, overrides: dict[str, Any],
                   set_values: tuple[str, ...] = ()) -> TrainConfig:
    """The config of the run in --run-dir, from its own config.toml; only --steps may change (to
    extend the run). The directory named on the command line is the run: a copied or moved run
    directory resumes itself, whatever run_dir its config.toml names (it is rewritten on open)."""
    from forgerl.errors import ConfigError

    run_dir = overrides.get("run_dir")
    if set_values:
        raise ConfigError("--resume continues a run with the config stored in its directory, so --set does not apply",
                          hint="drop --set (only --steps may change, to extend the run)")
    if config_path is not None or run_dir is None:
        raise ConfigError("--resume takes --run-dir (the run to continue) and no config file: the run keeps the "
                          "config stored in its directory")
    stored = Path(run_dir) / "config.toml"
    if not stored.is_file():
        raise ConfigError(f"cannot resume {run_dir}: it has no config.toml (not a forgerl run directory, or an "
                          "incomplete copy: copy the whole run directory)")
    moved = migrate_run_config(stored)  # a run made before the config was grouped: once, and said so
    if moved:
        console.print(f"migrated {stored} to the grouped config (the original is kept as {PRE_GROUPED_NAME}): "
                      + "; ".join(moved), markup=False, highlight=False, soft_wrap=True)
    named = load_config(stored).run_dir
    if Path(named).resolve() != Path(run_dir).resolve():
        console.print(f"resuming the run in {run_dir} (its config.toml named {named}: a copied or moved run "
                      "continues in its new place)", markup=False, highlight=False, soft_wrap=True)
    return load_config(stored, steps=overrides.get("steps"), run_dir=str(run_dir))


def run_sft(out: str | None = None, *, family: str = "tool-reasoning", examples: int = 1500, steps: int = 600,
            batch_size: int = 16, lr: float = 2e-3, seed: int = 0, chat_format: str = "minimax_m2",
            difficulty: list[int] | None = None, init: str = "tiny-random", varied: bool = False,
            perturb: PerturbSpec | None = None, max_length: int = 3072) -> Path:
    """Build the default policy: verified scripted-solver conversations -> SFT of tiny-random.
    With an active `perturb` spec the conversations are played under perturbed scaffolds
    (perturb/gold.py); conversations over `max_length` tokens are left out."""
    from rich.console import Console

    from forgerl.chat import get_format
    from forgerl.model.loading import DEFAULT_POLICY_DIR, load_policy
    from forgerl.train.rollouts import make_task
    from forgerl.train.sft import (
        encode_within,
        save_policy,
        train_sft_encoded,
        verified_conversations,
    )

    console = Console()
    levels = difficulty or [1, 2, 3]
    t0 = time.perf_counter()
    convs, rejected = asyncio.run(verified_conversations(
        family, range(seed, seed + examples), make_task=lambda s: make_task(family, s, levels[s % len(levels)])[1],
        error_every=5, varied=varied, perturb=perturb))
    model, tokenizer = load_policy(init, device="cpu", chat_format=chat_format, seed=seed)
    fmt = get_format(chat_format)
    encoded = encode_within(tokenizer, fmt, convs, max_length)
    too_long = len(convs) - len(encoded)
    perturbed = " under perturbed scaffolds" if perturb is not None and perturb.active else ""
    console.print(f"SFT data: {len(convs)} verified conversations from the {family} scripted solver{perturbed} "
                  f"({rejected} rejected by the verifier, {too_long} over {max_length} tokens left out) "
                  f"in {time.perf_counter() - t0:.1f} s")

    def log(step: int, loss: float) -> None:
        if step % 50 == 0 or step == steps - 1:
            console.print(f"sft step {step:4d}  loss {loss:.4f}  ({time.perf_counter() - t0:.0f} s)")

    losses = train_sft_encoded(model, encoded, steps=steps, batch_size=batch_size, lr=lr, seed=seed, log=log)
    target = Path(out) if out else DEFAULT_POLICY_DIR
    save_policy(model, tokenizer, target, {
        "made_by": "forgerl sft", "init": init, "family": family, "difficulty": levels, "examples": len(convs), "rejected": rejected,
        "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "chat_format": chat_format, "varied_styles": varied,
        "perturb": perturb.model_dump(mode="json") if perturb is not None and perturb.active else None,
        "max_length": max_length, "too_long": too_long,
        "final_loss": losses[-1] if losses else None, "seconds": time.perf_counter() - t0})
    console.print(f"saved the policy to {target} in {time.perf_counter() - t0:.0f} s")
    return target


__all__ = ["TrainConfig", "run_sft", "run_train"]
