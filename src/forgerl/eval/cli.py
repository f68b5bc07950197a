"""`forgerl eval`: load a model, run it on held-out tasks of a family, print pass rates with 95%
Wilson intervals per group, and store the trajectories (`forgerl store summary OUT` reads them).

`--env reasoning-gym:SPEC` evaluates a reasoning-gym mix given on the command line
(SPEC = generator[:difficulty][*weight],...; `reasoning-gym-tools:SPEC` also offers a calculator).

Defaults are training's held-out evaluation (train/config.py TrainConfig: env, model, chat format,
`eval.tasks`, the family's training difficulty, `max_turns`, `max_tokens`, `eval.temperature`,
`max_context`), read from TrainConfig rather than repeated here, so `forgerl eval` with no options
reports the number a run's report shows for the same model. The settings are printed first, with
every one the user changed named as differing from training's held-out evaluation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from forgerl.engine.base import Engine
    from forgerl.eval.run import EvalReport


ALL_DIFFICULTIES = "all"


@dataclass
class EvalSettings:
    """What an evaluation runs with; `held_out_settings` gives training's held-out evaluation."""

    env: str
    model: str
    n: int
    difficulty: int | None  # None: every level of the family, in turn
    seed: int
    chat_format: str
    max_turns: int
    max_tokens: int
    temperature: float
    max_context: int


def held_out_settings(env: str | None = None) -> EvalSettings:
    """Training's held-out evaluation for family `env` (default: training's family), read from
    TrainConfig's defaults: the one place these numbers live (train/rollouts.py `evaluate`)."""
    from forgerl.train.config import TrainConfig

    cfg = TrainConfig.model_validate({} if env is None else {"env": env})  # the family's training difficulty
    return EvalSettings(env=cfg.env, model=cfg.model, n=cfg.eval.tasks, difficulty=_one_level(cfg.env, cfg.difficulty),
                        seed=cfg.seed, chat_format=cfg.chat_format, max_turns=cfg.max_turns, max_tokens=cfg.max_tokens,
                        temperature=cfg.eval.temperature, max_context=cfg.max_context)


def _one_level(env: str, levels: list[int]) -> int | None:
    """Training cycles its held-out tasks through `levels`; eval takes one level or all of them."""
    if len(levels) == 1:
        return levels[0]
    from forgerl.envs.base import family_info

    return None if list(family_info(env).difficulties) == list(levels) else levels[0]


def resolve_settings(env: str | None = None, model: str | None = None, n: int | None = None,
                     difficulty: int | str | None = None, seed: int | None = None, chat_format: str | None = None,
                     max_turns: int | None = None, max_tokens: int | None = None, temperature: float | None = None,
                     ) -> tuple[EvalSettings, EvalSettings]:
    """(settings used, training's held-out settings for the same family): every None is training's
    value; `difficulty` may be ALL_DIFFICULTIES."""
    from forgerl.errors import ConfigError

    base = held_out_settings(env)
    if isinstance(difficulty, str):
        if difficulty.strip().lower() == ALL_DIFFICULTIES:
            level: int | None = None
        else:
            try:
                level = int(difficulty)
            except ValueError:
                raise ConfigError(f"--difficulty must be a level number or '{ALL_DIFFICULTIES}', got {difficulty!r}") from None
    else:
        level = base.difficulty if difficulty is None else difficulty
    chosen = {"model": model, "n": n, "seed": seed, "chat_format": chat_format, "max_turns": max_turns,
              "max_tokens": max_tokens, "temperature": temperature}
    used = dataclasses.replace(base, difficulty=level, **{k: v for k, v in chosen.items() if v is not None})
    return used, base


def settings_line(used: EvalSettings, training: EvalSettings) -> str:
    """One line naming the settings, and those that differ from training's held-out evaluation."""
    def show(s: EvalSettings, name: str) -> str:
        value = getattr(s, name)
        if name == "difficulty" and value is None:
            return ALL_DIFFICULTIES
        if name == "temperature" and value == 0:
            return "0 (greedy)"
        return str(value)

    names = ("model", "n", "difficulty", "max_turns", "max_tokens", "temperature", "seed", "chat_format")
    shown = ", ".join(f"{name} {show(used, name)}" for name in names)
    differ = [f"{name} {show(used, name)} (training: {show(training, name)})" for name in names
              if getattr(used, name) != getattr(training, name)]
    if not differ:
        return f"eval settings: {used.env}, {shown}: the same as training's held-out evaluation"
    return f"eval settings: {used.env}, {shown}. Differs from training's held-out evaluation in: {'; '.join(differ)}"


def run_eval(
    env: str | None = None, model: str | None = None, n: int | None = None, *, difficulty: int | str | None = None,
    split: str = "eval", seed: int | None = None, chat_format: str | None = None, max_turns: int | None = None,
    max_tokens: int | None = None, temperature: float | None = None,
    concurrency: int = 16, group_by: str = "category", out_dir: str | Path | None = None,
    engine: Engine | None = None, console: Console | None = None,
) -> EvalReport:
    """Evaluate `model` on `n` held-out tasks of `env`; `engine` replaces the loaded one (tests).
    Every setting left None is training's held-out evaluation's (`held_out_settings`)."""
    from rich.console import Console

    from forgerl.chat import get_format
    from forgerl.engine.base import SamplingParams
    from forgerl.eval.run import held_out_tasks, resolve_env, run_tasks, summarize

    console = console or Console()
    if env is not None:
        env = resolve_env(env)
    used, training = resolve_settings(env, model, n, difficulty, seed, chat_format, max_turns, max_tokens, temperature)
    env, model, n, seed, chat_format = used.env, used.model, used.n, used.seed, used.chat_format
    max_turns, max_tokens, temperature, difficulty = used.max_turns, used.max_tokens, used.temperature, used.difficulty
    tasks = held_out_tasks(env, n, seed=seed, difficulty=difficulty, split=split)  # fails fast, before the model
    fmt = get_format(chat_format)
    console.print(settings_line(used, training), highlight=False, soft_wrap=True)
    if engine is None:
        from forgerl.cli.preflight import check_model
        from forgerl.engine import load_engine

        check_model(model)  # a missing directory or a bad run reference: one error, before loading

        with console.status(f"loading {model} ..."):
            engine = load_engine(model, chat_format=chat_format, seed=seed, max_context=used.max_context)
    sampling = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed * 1000)  # top_p 1, as training
    config = {"kind": "eval", "env": env, "model": model, "n": len(tasks), "difficulty": difficulty, "split": split,
              "seed": seed, "chat_format": chat_format, "max_turns": max_turns, "max_tokens": max_tokens,
              "temperature": temperature}

    async def main() -> list:
        from forgerl.train.progress import step_progress

        try:
            with step_progress(f"eval {env}", len(tasks)) as advance:
                return await run_tasks(engine, fmt, env, tasks, sampling=sampling, max_turns=max_turns,
                                       max_total_tokens=min(used.max_context, engine.max_context),
                                       concurrency=concurrency, metadata={"eval_model": model}, on_done=advance)
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
    env: str | None = typer.Option(None, "--env", help="Task family (bfcl, reasoning-gym, ...) or "
                                   "reasoning-gym:GEN[:LEVEL][*W],... [default: training's, tool-reasoning]"),
    model: str | None = typer.Option(None, help="`default` (the shipped policy), `tiny-random`, a run or a Hugging "
                                     "Face model directory. [default: training's, `default`]"),
    n: int | None = typer.Option(None, "-n", help="Held-out tasks to evaluate (one episode each). "
                                 "[default: training's eval.tasks]"),
    difficulty: str | None = typer.Option(None, help="A level (bfcl: a category group) or 'all' (every level, in "
                                          "turn). [default: the level training uses for the family]"),
    split: str = typer.Option("eval", help="bfcl only: eval (held-out items), train or all."),
    seed: int | None = typer.Option(None, help="Seed for task selection and sampling. [default: training's, 0]"),
    chat_format: str | None = typer.Option(None, "--format", help="Chat format the agent is rendered in. "
                                           "[default: training's, minimax_m2]"),
    max_turns: int | None = typer.Option(None, help="Maximum LLM calls per episode. [default: training's max_turns]"),
    max_tokens: int | None = typer.Option(None, help="Maximum new tokens per LLM call. [default: training's max_tokens]"),
    temperature: float | None = typer.Option(None, help="Sampling temperature (0 = greedy). "
                                             "[default: training's eval.temperature, 0]"),
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
    from forgerl.plugins import load_cli_plugins

    load_cli_plugins(plugin)
    if scaffolds is not None:
        from forgerl.perturb.cli import eval_command as scaffold_eval

        used, _ = resolve_settings(env, model, n, difficulty, seed, chat_format, max_turns, max_tokens, temperature)
        scaffold_eval(model=used.model, env=used.env, scaffolds=scaffolds, n=used.n, difficulty=used.difficulty or 1,
                      spec=spec, chat_format=used.chat_format, max_turns=used.max_turns, max_tokens=used.max_tokens,
                      plugin=plugin)
        return

    # errors (unknown env or format, a bad setting, a missing model) reach the CLI's one error style
    run_eval(env, model, n, difficulty=difficulty, split=split, seed=seed, chat_format=chat_format,
             max_turns=max_turns, max_tokens=max_tokens, temperature=temperature, group_by=group_by, out_dir=out)
