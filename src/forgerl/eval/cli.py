"""`forgerl eval`: load a model, run it on held-out tasks of a family, print pass rates with 95%
Wilson intervals per group, and store the trajectories (`forgerl store summary OUT` reads them).

`--env reasoning-gym:SPEC` evaluates a reasoning-gym mix given on the command line
(SPEC = generator[:difficulty][*weight],...; `reasoning-gym-tools:SPEC` also offers a calculator).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from forgerl.engine.base import Engine
    from forgerl.eval.run import EvalReport


def run_eval(
    env: str, model: str = "default", n: int = 50, *, difficulty: int | None = None, split: str = "eval", seed: int = 0,
    chat_format: str = "minimax_m2", max_turns: int = 6, max_tokens: int = 192, temperature: float = 1.0,
    concurrency: int = 16, group_by: str = "category", out_dir: str | Path | None = None,
    engine: Engine | None = None, console: Console | None = None,
) -> EvalReport:
    """Evaluate `model` on `n` held-out tasks of `env`; `engine` replaces the loaded one (tests)."""
    from rich.console import Console

    from forgerl.chat import get_format
    from forgerl.engine.base import SamplingParams
    from forgerl.eval.run import held_out_tasks, resolve_env, run_tasks, summarize

    console = console or Console()
    env = resolve_env(env)
    tasks = held_out_tasks(env, n, seed=seed, difficulty=difficulty, split=split)  # fails fast, before the model
    fmt = get_format(chat_format)
    if engine is None:
        from forgerl.engine import load_engine

        with console.status(f"loading {model} ..."):
            engine = load_engine(model, chat_format=chat_format, seed=seed)
    sampling = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=0.95 if temperature > 0 else 1.0,
                              seed=seed * 1000)
    config = {"kind": "eval", "env": env, "model": model, "n": len(tasks), "difficulty": difficulty, "split": split,
              "seed": seed, "chat_format": chat_format, "max_turns": max_turns, "max_tokens": max_tokens,
              "temperature": temperature}

    async def main() -> list:
        try:
            return await run_tasks(engine, fmt, env, tasks, sampling=sampling, max_turns=max_turns,
                                   max_total_tokens=engine.max_context, concurrency=concurrency,
                                   metadata={"eval_model": model})
        finally:
            await engine.aclose()

    start = time.perf_counter()
    trajectories = asyncio.run(main())
    report = summarize(trajectories, group_by, env=env, model=model)
    if out_dir is not None:
        from forgerl.store import TrajectoryStore

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with TrajectoryStore(out) as store:
            run_id = store.add_run(config)
            store.add_trajectories(trajectories, run_id)
            store.set_run_status(run_id, "completed")
        report.store, report.run_id = str(out), run_id
        (out / "eval_report.json").write_text(json.dumps(report.as_dict(), indent=2), encoding="utf-8")
    print_report(console, report, time.perf_counter() - start)
    return report


def print_report(console: Console, report: EvalReport, elapsed_s: float | None = None) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"eval: {report.model} on {report.env} (pass = verifier outcome 1; 95% Wilson CI)")
    for column in (report.group_by, "episodes", "passed", "pass rate", "95% CI", "reward mean", "infra failed"):
        table.add_column(column)

    def add(stats, style: str = "") -> None:
        low, high = stats.ci
        table.add_row(Text(stats.group, style=style), str(stats.episodes), str(stats.passed), f"{stats.pass_rate:.3f}",
                      f"[{low:.3f}, {high:.3f}]", f"{stats.reward_mean:.3f}", str(stats.failed_infra))

    for stats in report.groups:
        add(stats)
    add(report.overall, "bold")
    console.print(table)
    if elapsed_s is not None:
        console.print(f"{report.overall.episodes + report.overall.failed_infra} episodes in {elapsed_s:.1f} s")
    if report.store:
        console.print(f"trajectories: {report.store} (run {report.run_id}); report: {report.store}/eval_report.json")


def eval_command(
    env: str = typer.Option(..., "--env", help="Task family (bfcl, reasoning-gym, ...) or reasoning-gym:GEN[:LEVEL][*W],..."),
    model: str = typer.Option("default", help="`default` (the shipped policy), `tiny-random` or a Hugging Face model directory."),
    n: int = typer.Option(50, "-n", help="Held-out tasks to evaluate (one episode each)."),
    difficulty: int | None = typer.Option(None, help="Only this difficulty (bfcl: a category group; default: all, in turn)."),
    split: str = typer.Option("eval", help="bfcl only: eval (held-out items), train or all."),
    seed: int = typer.Option(0, help="Seed for task selection and sampling."),
    chat_format: str = typer.Option("minimax_m2", "--format", help="Chat format the agent is rendered in."),
    max_turns: int = typer.Option(6, help="Maximum LLM calls per episode."),
    max_tokens: int = typer.Option(192, help="Maximum new tokens per LLM call."),
    temperature: float = typer.Option(1.0, help="Sampling temperature (0 = greedy)."),
    group_by: str = typer.Option("category", help="Trajectory metadata key to break pass rates down by."),
    out: str | None = typer.Option(None, "--out", help="Directory for the trajectory store and eval_report.json."),
    scaffolds: str | None = typer.Option(None, help="default, heldout or all: instead, success per perturbation "
                                                   "scaffold (perturb/: held-out chat format, naming, responses)."),
    spec: str | None = typer.Option(None, help="With --scaffolds: TOML whose \\[perturb] table declares held-out settings."),
    plugin: list[str] = typer.Option([], "--plugin", help="Module registering your own family or chat format (a "
                                     "module name or a .py path; repeatable). See docs/environments.md."),
) -> None:
    """Evaluate a model on held-out tasks: pass rate with a 95% Wilson interval, per category or
    generator, trajectories written to a store. With --scaffolds: per perturbation scaffold."""
    from forgerl.errors import ConfigError
    from forgerl.plugins import load_cli_plugins

    load_cli_plugins(plugin)
    if scaffolds is not None:
        from forgerl.perturb.cli import eval_command as scaffold_eval

        scaffold_eval(model=model, env=env, scaffolds=scaffolds, n=n, difficulty=difficulty or 1, spec=spec,
                      chat_format=chat_format, max_turns=max_turns, max_tokens=max_tokens, plugin=plugin)
        return

    try:
        run_eval(env, model, n, difficulty=difficulty, split=split, seed=seed, chat_format=chat_format,
                 max_turns=max_turns, max_tokens=max_tokens, temperature=temperature, group_by=group_by, out_dir=out)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="--env") from None
