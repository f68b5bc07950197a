"""`forgerl train`, `forgerl sft` and `forgerl export`, and what `forgerl train` does around the
loop: resolve and check everything before the model loads (preflight), print the live table, write
the report, and remove a run directory a failed start made. The loop itself is
forgerl/training.py (`run_training`); the SFT bootstrap is forgerl/train/sft.py (`run_sft`).

Heavy imports (torch, the trainer, the engine) are function-local so `forgerl --help` stays fast.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from forgerl.cli.errors import add_hint
from forgerl.errors import ConfigError
from forgerl.perturb.spec import PerturbSpec
from forgerl.plugins import load_run_plugins
from forgerl.train.config import PRE_GROUPED_NAME, TrainConfig, dump_config, load_config, migrate_run_config

# The commands below are plain functions that cli/main.py registers as `forgerl train`, `sft`, `export`.

LIVE_COLUMNS = (("rollout/reward", "reward"), ("rollout/pass_rate", "pass"), ("eval/reward", "eval"),
                ("train/loss", "loss"), ("train/entropy", "entropy"), ("mismatch/mean_abs_logprob", "|Δlogp|"),
                ("time/rollout_s", "rollout s"), ("time/train_s", "train s"))


def run_train(config_path: str | None = None, *, resume: bool = False, set_values: tuple[str, ...] = (),
              print_only: bool = False, plugins: tuple[str, ...] = (), world: World | None = None,
              **overrides: Any) -> None:
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

    load_run_plugins(config.plugins)
    if _is_follower_rank():  # inside torchrun, a rank other than 0: a shard and rank 0's commands, nothing else
        from forgerl.train.follower import follow  # heavy: forgerl.train.follower (torch), kept out of forgerl --help

        follow(config)
        return
    preflight_train(config, resume=resume)
    if world is not None and world.sharded and "WORLD_SIZE" not in os.environ:
        launch_ranks(config, world, _command_line(config_path, resume, set_values, plugins, overrides))
        return

    from forgerl.train.report import write_report  # heavy: forgerl.train.report, kept out of forgerl --help
    from forgerl.training import (
        run_training as train,  # sync or windowed-FIFO, from config.rollout.mode
    )  # heavy: forgerl.training (torch), kept out of forgerl --help

    tasks = (f"env={config.env} difficulty={config.difficulty}" if config.curriculum is None else
             f"curriculum={len(config.curriculum.stages)} stages of {','.join(config.curriculum.families())}")
    console.print(f"[bold]forgerl train[/]: model={config.model} {tasks} "
                  f"loss={config.loss.name} steps={config.steps} groups={config.groups_per_step}x{config.group_size} "
                  f"run_dir={config.run_dir}{' (resume)' if resume else ''}")
    header = Table(show_header=True, header_style="bold", box=None)
    header.add_column("step", justify="right")
    for _, label in LIVE_COLUMNS:
        header.add_column(label, justify="right")
    console.print(header)
    start = time.perf_counter()
    from forgerl.doctor import (  # heavy: forgerl.doctor (the store), kept out of forgerl --help
        DoctorLogTail,
        format_finding,
    )

    doctor_log = DoctorLogTail(config.run_dir)  # the loop's run doctor writes new warnings there

    def show(step: int, metrics: dict[str, float]) -> None:
        row = Table(show_header=False, box=None)
        row.add_column(justify="right")
        for _ in LIVE_COLUMNS:
            row.add_column(justify="right")
        row.add_row(str(step), *(f"{metrics[k]:.3f}" if k in metrics else "" for k, _ in LIVE_COLUMNS))
        console.print(row)
        for _, finding in doctor_log.new():  # each condition once, when it first shows (forgerl doctor RUN for all)
            console.print(f"  doctor: {format_finding(finding, evidence=False)}", style="yellow", markup=False,
                          highlight=False, soft_wrap=True)

    from forgerl.train.interrupt import (  # heavy: forgerl.train.interrupt, kept out of forgerl --help
        EXIT_INTERRUPTED,
        TrainingInterrupted,
    )

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


@dataclass(frozen=True)
class World:
    """`--nproc-per-node`, `--nnodes`, `--node-rank`, `--rdzv-endpoint`: how many ranks and where."""

    nproc_per_node: int = 1
    nnodes: str | None = None
    node_rank: int | None = None
    rdzv_endpoint: str | None = None

    @property
    def sharded(self) -> bool:
        return self.nproc_per_node > 1 or self.nnodes not in (None, "1") or self.rdzv_endpoint is not None

    def flags(self) -> list[str]:
        out = ["--nproc-per-node", str(self.nproc_per_node)]
        for name, value in (("--nnodes", self.nnodes), ("--node-rank", self.node_rank),
                            ("--rdzv-endpoint", self.rdzv_endpoint)):
            if value is not None:
                out += [name, str(value)]
        return out


def _is_follower_rank() -> bool:
    """torchrun's rank other than 0 (read from its variables here, so --help imports no torch)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0


def launch_ranks(config: TrainConfig, world: World, command: list[str]) -> None:
    """Run `forgerl COMMAND` as the world's ranks under torch.distributed.run (train/launch.py); a
    failed rank becomes one error naming it, with the command that resumes the run (exit 1)."""
    import shlex

    if config.distributed.launcher == "ray":  # Ray places the ranks (train/ray_launch.py); the rest is torchrun's
        from forgerl.train.ray_launch import launch_ranks_with_ray  # heavy: imports ray, an optional extra

        launch_ranks_with_ray(command, nproc_per_node=world.nproc_per_node, nnodes=world.nnodes, node_rank=world.node_rank,
                              rdzv_endpoint=world.rdzv_endpoint, device=config.device, timeout_s=config.distributed.timeout_s,
                              run_dir=Path(config.run_dir), resume_command=shlex.join(
                                  ["forgerl", "train", "--resume", "--run-dir", config.run_dir, *world.flags()]))
        return
    from forgerl.model.loading import resolve_device  # heavy: forgerl.model.loading, kept out of forgerl --help
    from forgerl.train.launch import (  # heavy: forgerl.train.launch (torch), kept out of forgerl --help
        failure_message,
        launch,
        torchrun_args,
    )
    from forgerl.train.sharded import check_world  # heavy: forgerl.train.sharded (torch), kept out of forgerl --help

    check_world(resolve_device(config.device), world.nproc_per_node)
    if world.nnodes not in (None, "1") and world.rdzv_endpoint is None:
        raise ConfigError(f"--nnodes {world.nnodes} needs --rdzv-endpoint HOST:PORT: the address where the nodes meet",
                          hint="give node 0's address and a free port, e.g. --rdzv-endpoint 10.0.0.1:29400, on every node")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from forgerl.train.interrupt import EXIT_INTERRUPTED  # heavy: forgerl.train.interrupt, kept out of forgerl --help

    resume = shlex.join(["forgerl", "train", "--resume", "--run-dir", config.run_dir, *world.flags()])
    try:
        launch(torchrun_args(world.nproc_per_node, world.nnodes, world.node_rank, world.rdzv_endpoint, command),
               world.nproc_per_node)
    except ChildFailedError as exc:
        what, hint = failure_message(exc, Path(config.run_dir), resume)
        print(f"error: sharded training failed: {what}\nhint: {hint}", file=sys.stderr)
        raise SystemExit(1) from None
    except SignalException as exc:  # Ctrl-C / SIGTERM: torchrun passed it to the ranks and stopped them
        print(f"stopped by {exc.sigval.name}; resume with: {resume}", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None


def _command_line(config_path: str | None, resume: bool, set_values: tuple[str, ...], plugins: tuple[str, ...],
                  overrides: dict[str, Any]) -> list[str]:
    """This `forgerl train` command again, without the launch flags: what each rank runs."""
    command = ["train"] + ([config_path] if config_path else [])
    for name in ("model", "env", "steps", "seed", "device", "run_dir"):
        if overrides.get(name) is not None:
            command += [f"--{name.replace('_', '-')}", str(overrides[name])]
    if overrides.get("loss") is not None:
        command += ["--loss", overrides["loss"]["name"]]
    for value in set_values:
        command += ["--set", value]
    for plugin in plugins:
        command += ["--plugin", plugin]
    return command + (["--resume"] if resume else [])


def preflight_train(config: TrainConfig, *, resume: bool) -> None:
    """Everything `forgerl train` can check without loading the model or creating the run directory."""
    from forgerl.cli.preflight import (  # heavy: forgerl.cli.preflight, kept out of forgerl --help
        check_chat_format,
        check_env,
        check_model,
        check_new_run_dir,
    )
    from forgerl.model.loading import resolve_device  # heavy: forgerl.model.loading, kept out of forgerl --help

    if config.curriculum is None:
        check_env(config.env, config.difficulty)
    else:  # the stages name the families; `env` is not used
        from forgerl.rollout.curriculum import (
            check_curriculum,  # heavy: forgerl.rollout (envs), kept out of forgerl --help
        )

        check_curriculum(config.curriculum)
    check_chat_format(config.chat_format)
    check_model(config.model)
    resolve_device(config.device)
    from forgerl.rollout.episode import (
        check_episode_features,  # heavy: forgerl.rollout.episode, kept out of forgerl --help
    )

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


def _config_default(name: str) -> str:
    """A TrainConfig field's default for --help (train's options are None so that only the ones
    given override the config file; the default is shown as the config's)."""
    field = TrainConfig.model_fields[name]
    value = field.get_default(call_default_factory=True)
    return str(getattr(value, "name", value))


def train(
    config: str | None = typer.Argument(None, help="TOML config (see examples/configs/); defaults otherwise."),
    model: str | None = typer.Option(None, help="`default`, `tiny-random`, a Hugging Face model directory, or a run "
                                     "(RUN, RUN:best, RUN:step_N).", show_default=_config_default("model")),
    env: str | None = typer.Option(None, help="Task family to train on.", show_default=_config_default("env")),
    steps: int | None = typer.Option(None, help="Optimizer steps.", show_default=_config_default("steps")),
    loss: str | None = typer.Option(None, help="cispo, grpo, ppo, dapo or gspo.", show_default=_config_default("loss")),
    seed: int | None = typer.Option(None, help="Run seed.", show_default=_config_default("seed")),
    device: str | None = typer.Option(None, help="cpu, cuda or auto.", show_default=_config_default("device")),
    run_dir: str | None = typer.Option(None, help="Run directory (store, checkpoints, report).",
                                       show_default=_config_default("run_dir")),
    set_values: list[str] | None = typer.Option(
        None, "--set", metavar="KEY=VALUE", show_default=False,
        help="Set any config key (repeatable): steps=3, optim.lr=1e-4, loss.name=grpo, difficulty=[1,2]. Values are TOML "
             "(a bare word is a string); applied after the config file, before the options above."),
    print_config: bool = typer.Option(False, "--print-config",
                                      help="Print the fully resolved config as TOML and exit (nothing is created)."),
    resume: bool = typer.Option(False, help="Continue the run in --run-dir from its last checkpoint."),
    plugin: list[str] | None = typer.Option(
        None, "--plugin", show_default=False,
        help="Module that registers your own task family or chat format: a module name or a .py path (repeatable; "
             "added to the config's `plugins`; also FORGERL_PLUGINS and entry points, see docs/environments.md)."),
    nproc_per_node: int = typer.Option(1, "--nproc-per-node", min=1, rich_help_panel="Sharded training (docs/scaling.md)",
                                       help="Ranks on this node (one per GPU): >1 shards the trainer with FSDP2 under "
                                            "torch.distributed.run; rank 0 runs the rollouts, engine and store."),
    nnodes: str | None = typer.Option(None, "--nnodes", rich_help_panel="Sharded training (docs/scaling.md)",
                                      help="Nodes in the run (torchrun's --nnodes); run the same command on each."),
    node_rank: int | None = typer.Option(None, "--node-rank", min=0, rich_help_panel="Sharded training (docs/scaling.md)",
                                         help="This node's index, 0 to nnodes-1 (0 is the node that runs rank 0)."),
    rdzv_endpoint: str | None = typer.Option(None, "--rdzv-endpoint", metavar="HOST:PORT",
                                             rich_help_panel="Sharded training (docs/scaling.md)",
                                             help="Where the nodes meet (torchrun's c10d rendezvous): a host every node "
                                                  "reaches, e.g. node 0's address and a free port."),
) -> None:
    """RL-train the agent (the main job). With no arguments: the embedded default policy on the
    tool-reasoning family, on CPU, with the reward shown live and a report at the end."""
    overrides: dict[str, object] = {"model": model, "env": env, "steps": steps, "seed": seed, "device": device,
                                    "run_dir": run_dir}
    if loss is not None:
        overrides["loss"] = {"name": loss}
    world = World(nproc_per_node, nnodes, node_rank, rdzv_endpoint)
    run_train(config, resume=resume, set_values=tuple(set_values or ()), print_only=print_config,
              plugins=tuple(plugin or ()), world=world, **overrides)


def export(
    run: str = typer.Argument(..., help="RUN (its latest good checkpoint), RUN:best or RUN:step_N."),
    out: str = typer.Option(..., "--out", help="New directory for the Hugging Face model (config, tokenizer, weights, README.md)."),
) -> None:
    """Export a trained model: a clean Hugging Face model directory with a model card (training
    config, held-out curve, data), loadable by transformers and by `--model DIR`."""
    from forgerl.train.export import export_model  # heavy: forgerl.train.export (torch), kept out of forgerl --help

    try:
        target = export_model(run, out)
    except ConfigError as exc:  # cli/errors.py prints it: error + hint, exit 2
        raise add_hint(exc, "give a run directory made by `forgerl train` (RUN, RUN:best or RUN:step_N) "
                            "and a new --out directory") from None
    typer.echo(f"exported {run} to {target}")


def sft(
    out: str | None = typer.Option(None, help="Output directory (default: the shipped default policy's place)."),
    examples: int | None = typer.Option(None, min=0, help="Scripted-solver conversations to generate (verified by the "
                                        "env). Default 1200, or 0 with --from-store (then the store's alone)."),
    steps: int = typer.Option(400, help="Optimizer steps."),
    batch_size: int = typer.Option(8, help="Conversations per step."),
    lr: float = typer.Option(2e-3, help="Peak learning rate (cosine decay after warm-up)."),
    seed: int = typer.Option(0, help="Seed for data and initialisation."),
    init: str = typer.Option("tiny-random", help="Model to start from (`tiny-random` or a checkpoint directory)."),
    difficulty: str = typer.Option("1,2,3", help="Comma-separated difficulty levels the conversations are drawn from."),
    varied_styles: bool = typer.Option(False, "--varied-styles", help="Draw each conversation's solver style (lookups per "
                                       "round, terse or full thinking) from its seed, so the policy learns several ways to work."),
    perturb_probability: float = typer.Option(0.0, min=0.0, max=1.0, help="Play each conversation under perturbed scaffolds: "
                                              "the chance each perturbation dimension fires (0 = off; held-out scaffolds are never drawn)."),
    perturb_strength: float = typer.Option(0.5, min=0.0, max=1.0, help="How much each fired dimension changes (0..1)."),
    max_length: int = typer.Option(3072, min=64, help="Leave out conversations longer than this many tokens."),
    mtp_weight: float | None = typer.Option(None, "--mtp-weight", min=0.0, help="Weight of the MTP heads' loss "
                                            "(default 0.3 when the model has MTP heads, else off)."),
    mtp_modules: int = typer.Option(0, "--mtp-modules", min=0, help="Attach this many fresh MTP heads when --init has none."),
    from_store: str | None = typer.Option(None, "--from-store", metavar="RUN_DIR", rich_help_panel="Rejection sampling",
                                          help="Also train on a run's own trajectories that passed its verifier (trained "
                                               "on the token ids the run recorded; --init must share the run's tokenizer)."),
    min_reward: float = typer.Option(1.0, "--min-reward", rich_help_panel="Rejection sampling",
                                     help="Keep completed trajectories whose verifier outcome (the pass rate, before "
                                          "process penalties) is at least this (1.0 = every rubric item passed)."),
    families: str | None = typer.Option(None, "--families", metavar="A,B", rich_help_panel="Rejection sampling",
                                        help="Keep only these task families (default: all in the store)."),
    max_examples: int | None = typer.Option(None, "--max-examples", min=1, rich_help_panel="Rejection sampling",
                                            help="At most this many stored trajectories (a seeded sample)."),
    drop_prompt_sections: float = typer.Option(0.0, "--drop-prompt-sections", min=0.0, max=1.0,
                                               rich_help_panel="Rejection sampling",
                                               help="Prompt distillation: drop each `## ` section of the system prompt "
                                                    "with this probability per example (recorded in sft_examples.jsonl)."),
    family: str = typer.Option("tool-reasoning", "--family", help="Task family whose scripted solver makes the data."),
    context_action: str | None = typer.Option(None, "--context-action", metavar="NAME", rich_help_panel="Context management",
                                              help="The context tool (context_NAME: keep_last_turns, drop_old_rounds, "
                                                   "drop_tool_outputs) the solver calls in --context-examples episodes."),
    context_examples: int = typer.Option(0, "--context-examples", min=0, rich_help_panel="Context management",
                                         help="More episodes, played through the agent loop, where the solver manages "
                                              "its context (one example per prefix-tree root)."),
    context_window: int = typer.Option(2048, "--context-window", min=64, rich_help_panel="Context management",
                                       help="The context (tokens) those episodes are played in: the RL run's max_context."),
    reading_examples: int = typer.Option(0, "--reading-examples", min=0,
                                         help="Also train on this many plain chat turns that ask back a fact from the "
                                              "turn itself (copy, look up, repeat a name, long numbers)."),
) -> None:
    """Build the default policy: SFT of `tiny-random` on verified scripted-solver trajectories with
    interleaved thinking (the reproducible bootstrap of the embedded default); with --from-store,
    on a run's passing trajectories too (rejection sampling), optionally with prompt distillation."""
    from forgerl.pretrain.chat_turns import reading_turns  # with the heavy imports below, kept out of forgerl --help
    from forgerl.train.sft import run_sft  # heavy: forgerl.train.sft (torch), kept out of forgerl --help
    from forgerl.train.sft_store import StoreSelection  # heavy: forgerl.train.sft_store (the store), kept out of --help

    levels = _difficulty_levels(difficulty)
    spec = PerturbSpec.uniform(perturb_probability, perturb_strength) if perturb_probability > 0 else None
    named = tuple(f.strip() for f in families.split(",") if f.strip()) if families else None
    if from_store is None and (families is not None or max_examples is not None or min_reward != 1.0):
        raise typer.BadParameter("--min-reward, --families and --max-examples choose trajectories from a store: "
                                 "add --from-store RUN_DIR", param_hint="--from-store")
    scripted = examples if examples is not None else (0 if from_store is not None else 1200)
    try:
        run_sft(out, examples=scripted, steps=steps, batch_size=batch_size, lr=lr, seed=seed, init=init,
                difficulty=levels, varied=varied_styles, perturb=spec, max_length=max_length, mtp_weight=mtp_weight,
                mtp_modules=mtp_modules, from_store=from_store, drop_prompt_sections=drop_prompt_sections,
                store_selection=StoreSelection(min_reward, named, max_examples), family=family,
                context_action=context_action, context_examples=context_examples, context_window=context_window,
                reading=reading_turns(reading_examples, seed))
    except ConfigError as exc:  # a missing --init model and the like; cli/errors.py prints error + hint, exit 2
        raise add_hint(exc, "pass --init tiny-random or a model directory, and check the other options") from None
    except ValueError as exc:  # bad settings (e.g. every conversation over --max-length): a user's mistake, exit 2
        raise ConfigError(str(exc), hint="change the option the message names (e.g. raise --max-length) "
                                         "and run again") from exc


def _difficulty_levels(difficulty: str) -> list[int]:
    """--difficulty "1,2,3" as levels; anything else is a bad option value, which typer reports as usage."""
    try:
        return [int(x) for x in difficulty.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"{difficulty!r} is not a comma-separated list of whole numbers, e.g. 1,2,3",
                                 param_hint="--difficulty") from None
