"""What `forgerl envs list`, `forgerl envs validate` and `forgerl rollout -n K --out DIR` do.

In cli/ (not envs/) because a rollout command drives the agent and the engine: the environment
package itself must not import either. Kept out of cli/main.py so the commands stay thin and these
functions can be tested (and called from scripts) without a command line. Nothing here imports
torch at module level.

`validate` is contract 5 (DESIGN.md) as a command: for every family and difficulty it plays the
gold path on generated tasks (each must score 1.0) and scores the no-ops (the empty episode, and
the no-op the family declares with its own tools, `Family.noop`: each must score <= 0). A family
that fails either is not to be trained on; one that declares no no-op is validated with a warning.
A family that declares partial solutions (`Family.variants`, e.g. seeded broken apps) must score
each strictly between 0 and 1. A family with a `validation_cost` (a browser per episode) is
validated only when named.

The typer commands of `forgerl envs list/validate` and `forgerl rollout` live here too (with
`--plugin`), so a user's family can be named on the command line (forgerl/plugins.py), and so do
`forgerl envs export` (a seeded family's tasks to a task file) and `forgerl envs calibrate` (pass
rates of a model per task, written back as difficulty; the work is in cli/calibrate.py).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from forgerl.cli.calibrate import calibrate, open_engine, read_task_file
from forgerl.envs.base import (
    Environment,
    Family,
    NoopScript,
    Task,
    family_info,
    list_families,
    make_env,
    play_rounds,
    run_gold,
    sample_task,
)
from forgerl.envs.tasks import generate_tasks, save_tasks
from forgerl.errors import ConfigError
from forgerl.plugins import PLUGIN_OPTION_HELP, load_cli_plugins
from forgerl.types import ToolCall, Trajectory, TrajectoryStatus

if TYPE_CHECKING:
    from rich.console import Console

    from forgerl.engine.base import Engine
    from forgerl.envs.noise import NoiseConfig


def family_rows() -> list[tuple[str, str, str]]:
    """(name, difficulties, description) of every registered family."""
    rows = []
    for name in list_families():
        fam = family_info(name)
        levels = ", ".join(map(str, fam.difficulties))
        rows.append((name, levels, fam.description or "-"))
    return rows


def print_families(console: Console) -> None:
    from rich.table import Table

    table = Table(title="task families")
    for column in ("family", "difficulties", "description"):
        table.add_column(column)
    for row in family_rows():
        table.add_row(*row)
    console.print(table)


# --- validate ----------------------------------------------------------------------------------


@dataclass
class ValidationRow:
    family: str
    difficulty: int
    tasks: int = 0
    gold_passed: int = 0
    noop_zero: int = 0
    variants: int = 0
    variants_between: int = 0
    """Declared partial solutions played, and how many scored strictly between 0 and 1."""
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """Things not checked (a family without a declared no-op); they do not fail the row."""
    skipped: str = ""
    """Why the family was not validated (an expensive family not named on the command line)."""

    @property
    def ok(self) -> bool:
        return self.gold_passed == self.tasks and self.noop_zero == self.tasks and self.variants_between == self.variants


async def _gold_score(env: Environment, task: Task) -> float:
    try:
        _, result = await run_gold(env, task)
        return result.score
    finally:
        await env.close()


def _empty_episode(task: Task) -> list[list[ToolCall]]:
    return []


def _offered_tools_only(env: Environment, family: str, script: NoopScript) -> NoopScript:
    """`script`, refusing (ConfigError) calls of tools the environment does not offer after its
    reset: a no-op naming another family's submit tool would otherwise be refused and pass."""

    def checked(task: Task) -> list[list[ToolCall]]:
        rounds = script(task)
        offered = sorted(spec.name for spec in env.tools())
        unknown = sorted({call.name for round_ in rounds for call in round_} - set(offered))
        if unknown:
            raise ConfigError(f"the declared no-op of family {family!r} calls {', '.join(map(repr, unknown))}, which "
                              f"its environment does not offer (tools: {', '.join(offered)}); fix Family(noop=...)")
        return rounds

    return checked


async def _noop_scores(family: Family, seed: int, task: Task) -> list[float]:
    """The empty episode, and the family's declared no-op (its calls may be refused: a refused
    empty answer leaves the episode without one, which must score <= 0 too)."""
    scripts: list[NoopScript] = [_empty_episode]
    if family.noop is not None:
        scripts.append(family.noop)
    scores = []
    for script in scripts:
        env = make_env(family.name, seed)
        try:
            _, result = await play_rounds(env, task, _offered_tools_only(env, family.name, script), refused_ok=True)
            scores.append(result.score)
        finally:
            await env.close()
    return scores


async def _validate_level(family: str, difficulty: int | None, n: int, seed: int) -> ValidationRow:
    level = difficulty if difficulty is not None else 1
    row = ValidationRow(family=family, difficulty=level)
    fam = family_info(family)
    if fam.noop is None:
        row.warnings.append(f"{family}: no no-op declared (Family(noop=...)), so only the empty episode was checked; "
                            "a verifier that accepts any submission would pass")
    for index, task in enumerate(generate_tasks(family, n, seed=seed, difficulty=difficulty)):
        row.tasks += 1
        try:  # a crashing family is a failed validation, reported with the task
            gold = await _gold_score(make_env(family, index), task)
        except Exception as exc:
            row.problems.append(f"{task.id}: gold path: {type(exc).__name__}: {exc}")
        else:
            if math.isclose(gold, 1.0, abs_tol=1e-9):
                row.gold_passed += 1
            else:
                row.problems.append(f"{task.id}: gold scored {gold:g}, expected 1")
        try:
            noop = await _noop_scores(fam, index, task)
        except Exception as exc:
            row.problems.append(f"{task.id}: no-op: {type(exc).__name__}: {exc}")
            continue
        if all(score <= 0 for score in noop):
            row.noop_zero += 1
        else:
            row.problems.append(f"{task.id}: a no-op scored {max(noop):g}, expected <= 0")
        await _check_variants(fam, index, task, row)
    return row


async def _check_variants(family: Family, seed: int, task: Task, row: ValidationRow) -> None:
    """Play each declared partial solution (`Family.variants`): it must score strictly between 0 and 1."""
    try:
        scripts = family.variants(task) if family.variants is not None else {}
    except Exception as exc:
        row.variants += 1
        row.problems.append(f"{task.id}: variants: {type(exc).__name__}: {exc}")
        return
    for name, rounds in scripts.items():
        row.variants += 1
        env = make_env(family.name, seed)
        try:
            _, result = await play_rounds(env, task, lambda _task, rounds=rounds: rounds)
        except Exception as exc:
            row.problems.append(f"{task.id}: variant {name}: {type(exc).__name__}: {exc}")
            continue
        finally:
            await env.close()
        if 0 < result.score < 1:
            row.variants_between += 1
        else:
            row.problems.append(f"{task.id}: variant {name} scored {result.score:g}, expected strictly between 0 and 1")


def validate_families(names: list[str] | None = None, per_difficulty: int = 20, seed: int = 0) -> list[ValidationRow]:
    """One row per (family, difficulty): how many gold paths scored 1 and no-ops scored <= 0."""
    if per_difficulty < 1:
        raise ConfigError(f"--n must be >= 1, got {per_difficulty}")
    families = names or list_families()
    rows = []
    for name in families:
        fam = family_info(name)
        if names is None and fam.validation_cost:
            rows.append(ValidationRow(family=name, difficulty=0, skipped=fam.validation_cost))
            continue
        levels: list[int | None] = list(fam.difficulties) if fam.generate is not None else [None]
        for level in levels:
            rows.append(asyncio.run(_validate_level(name, level, per_difficulty, seed)))
    return rows


def print_validation(console: Console, rows: list[ValidationRow], max_problems: int = 5) -> bool:
    """The pass-count table and the first problems; returns True when every row passed."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title="environment validation (gold must score 1, no-ops <= 0, variants in (0, 1))")
    for column in ("family", "difficulty", "tasks", "gold = 1", "no-op <= 0", "variants in (0, 1)", "ok"):
        table.add_column(column)
    for row in rows:
        if row.skipped:
            table.add_row(row.family, "-", "-", "-", "-", "-", Text("skipped", style="yellow"))
            continue
        variants = f"{row.variants_between}/{row.variants}" if row.variants else "-"
        table.add_row(row.family, str(row.difficulty), str(row.tasks), str(row.gold_passed), str(row.noop_zero),
                      variants, Text("yes", style="green") if row.ok else Text("NO", style="red"))
    console.print(table)
    for row in rows:
        if row.skipped:
            console.print(Text(f"skipped {row.family}: {row.skipped}; validate it by name: "
                               f"forgerl envs validate {row.family}", style="yellow"))
    for warning in dict.fromkeys(w for row in rows for w in row.warnings):
        console.print(Text(f"warning: {warning}", style="yellow"))
    problems = [p for row in rows for p in row.problems]
    for problem in problems[:max_problems]:
        console.print(Text(problem, style="red"))
    if len(problems) > max_problems:
        console.print(Text(f"... and {len(problems) - max_problems} more problems", style="red"))
    return all(row.ok for row in rows)


# --- rollout -n K --out DIR --------------------------------------------------------------------


@dataclass
class RolloutSummary:
    episodes: int
    reward_mean: float | None  # over scored episodes (FAILED ones have no reward)
    statuses: dict[str, int]
    llm_calls_mean: float
    elapsed_s: float


def summarize(trajectories: list[Trajectory], elapsed_s: float) -> RolloutSummary:
    rewards = [t.reward for t in trajectories if t.reward is not None]
    return RolloutSummary(
        episodes=len(trajectories),
        reward_mean=sum(rewards) / len(rewards) if rewards else None,
        statuses=dict(Counter(t.status.value for t in trajectories)),
        llm_calls_mean=sum(len(t.calls) for t in trajectories) / max(1, len(trajectories)),
        elapsed_s=elapsed_s,
    )


def run_rollouts(
    model: str = "tiny-random",
    env: str = "arithmetic",
    n: int = 1,
    seed: int = 0,
    chat_format: str = "minimax_m2",
    max_turns: int = 4,
    max_tokens: int = 96,
    out_dir: str | Path | None = None,
    *,
    difficulty: int | None = None,
    noise: NoiseConfig | None = None,
    engine: Engine | None = None,
    console: Console | None = None,
) -> list[Trajectory]:
    """K episodes of the white-box agent on tasks seed, seed+1, ..., sharing one engine and running
    concurrently; writes `episode-0000.json`... (plus `summary.json`) into `out_dir` and prints a
    summary table. `engine` replaces the built-in one (tests inject a fake)."""
    from rich.console import Console

    from forgerl.agent.loop import run_episode  # heavy: forgerl.agent.loop, kept out of forgerl --help
    from forgerl.agent.tools import close_env  # heavy: forgerl.agent, kept out of forgerl --help
    from forgerl.chat import get_format  # heavy: forgerl.chat, kept out of forgerl --help
    from forgerl.engine.base import SamplingParams  # heavy: forgerl.engine, kept out of forgerl --help

    if n < 1:
        raise ConfigError(f"-n must be >= 1, got {n}")
    console = console or Console()
    fmt = get_format(chat_format)
    family_info(env)  # fail fast on an unknown family, before loading a model
    if engine is None:
        from forgerl.engine import load_engine  # heavy: forgerl.engine, kept out of forgerl --help

        with console.status(f"loading {model} ..."):
            engine = load_engine(model, chat_format=chat_format, seed=seed)
    tasks = [sample_task(env, seed + i, difficulty) for i in range(n)]
    envs = [make_env(env, seed + i, noise=noise.model_copy(update={"seed": noise.seed + i}) if noise else None)
            for i in range(n)]

    async def one(i: int) -> Trajectory:
        sampling = SamplingParams(max_tokens=max_tokens, temperature=1.0, top_p=0.95, top_k=40, seed=(seed + i) * 1000)
        traj: Trajectory | None = None
        try:
            traj = await run_episode(engine, fmt, envs[i], tasks[i], sampling=sampling, max_turns=max_turns,
                                     max_total_tokens=engine.max_context)
            traj.metadata["env_events"] = envs[i].events()
            return traj
        finally:
            await close_env(envs[i], traj)  # never raises: a failed cleanup must not lose the other episodes

    async def all_episodes() -> list[Trajectory]:
        try:
            return list(await asyncio.gather(*(one(i) for i in range(n))))
        finally:
            await engine.aclose()

    start = time.perf_counter()
    trajectories = asyncio.run(all_episodes())
    summary = summarize(trajectories, time.perf_counter() - start)
    if out_dir is not None:
        _write(Path(out_dir), trajectories, summary)
    print_summary(console, summary, out_dir)
    return trajectories


def _write(out: Path, trajectories: list[Trajectory], summary: RolloutSummary) -> None:
    import dataclasses
    import json

    out.mkdir(parents=True, exist_ok=True)
    for i, traj in enumerate(trajectories):
        (out / f"episode-{i:04d}.json").write_text(traj.model_dump_json(indent=2), encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(dataclasses.asdict(summary), indent=2), encoding="utf-8")


def print_summary(console: Console, summary: RolloutSummary, out_dir: str | Path | None) -> None:
    from rich.table import Table

    table = Table(show_header=False, title="rollout summary")
    table.add_row("episodes", str(summary.episodes))
    table.add_row("reward mean", "none (all failed)" if summary.reward_mean is None else f"{summary.reward_mean:.4g}")
    for status in TrajectoryStatus:
        table.add_row(f"  {status.value}", str(summary.statuses.get(status.value, 0)))
    table.add_row("llm calls / episode", f"{summary.llm_calls_mean:.2f}")
    table.add_row("wall time", f"{summary.elapsed_s:.2f} s")
    if out_dir is not None:
        table.add_row("written to", str(out_dir))
    console.print(table)


# --- the commands (typer) ----------------------------------------------------------------------

envs_app = typer.Typer(help="Task families: list them, validate their gold paths.", no_args_is_help=True)


@envs_app.command("list")
def envs_list(plugin: list[str] = typer.Option([], "--plugin", help=PLUGIN_OPTION_HELP)) -> None:
    """List the registered task families (plug-ins included) with their difficulties and descriptions."""
    from rich.console import Console

    load_cli_plugins(plugin)
    print_families(Console())


@envs_app.command("validate")
def envs_validate(
    name: str | None = typer.Argument(None, help="One family to validate (default: every family)."),
    n: int = typer.Option(20, "-n", help="Generated tasks per difficulty level."),
    seed: int = typer.Option(0, help="Seed of the generated task sets."),
    plugin: list[str] = typer.Option([], "--plugin", help=PLUGIN_OPTION_HELP),
) -> None:
    """Play every family's gold path on generated tasks (must score 1) and score its no-ops (must
    score <= 0); exits with code 1 if anything fails."""
    from rich.console import Console

    load_cli_plugins(plugin)
    try:
        rows = validate_families([name] if name else None, per_difficulty=n, seed=seed)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="NAME") from None
    if not print_validation(Console(), rows):
        raise typer.Exit(code=1)


@envs_app.command("export")
def envs_export(
    name: str = typer.Argument(..., help="The seeded family to draw tasks from."),
    n: int = typer.Option(..., "-n", help="How many tasks (difficulties cycle 1, 2, ..., max)."),
    out: Path = typer.Option(..., "--out", help="The JSONL task file to write (overwritten)."),
    seed: int = typer.Option(0, help="Seed of the task set (task i uses seed*1000003 + i)."),
    difficulty: int | None = typer.Option(None, help="Only this difficulty (default: cycle through all)."),
    plugin: list[str] = typer.Option([], "--plugin", help=PLUGIN_OPTION_HELP),
) -> None:
    """Write `n` generated tasks of a seeded family to a task file (what `envs calibrate` and
    `--tasks` read). terminal: 48 tasks from seed 0 cover every template, difficulty and hint variant."""
    load_cli_plugins(plugin)
    try:
        count = save_tasks(out, generate_tasks(name, n, seed=seed, difficulty=difficulty))
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="NAME") from None
    typer.echo(f"wrote {count} {name} tasks to {out}")


@envs_app.command("calibrate")
def envs_calibrate(
    name: str = typer.Argument(..., help="The family of the tasks in --tasks."),
    tasks: Path = typer.Option(..., "--tasks", help="JSONL task file to calibrate; rewritten in place (atomically)."),
    model: str = typer.Option("default", help="`default`, a model directory or a run; with --url: the server "
                              "model's tokenizer ('default' or a directory)."),
    n: int = typer.Option(4, "-n", help="Episodes per task."),
    url: str | None = typer.Option(None, "--url", help="A completions server (forgerl serve, vLLM's OpenAI-compatible "
                                   "server) to sample from instead of loading the model here."),
    api_key_env: str = typer.Option("FORGERL_API_KEY", help="With --url: environment variable holding the API key."),
    chat_format: str = typer.Option("minimax_m2", "--format", help="Chat format the agent is rendered in."),
    max_turns: int = typer.Option(12, help="Maximum LLM calls per episode."),
    max_tokens: int = typer.Option(1024, help="Maximum new tokens per LLM call."),
    max_context: int = typer.Option(16384, help="Context of the model (prompt + completion tokens)."),
    temperature: float = typer.Option(1.0, help="Sampling temperature (pass rates need > 0 to mean anything)."),
    seed: int = typer.Option(0, help="Sampling seed."),
    concurrency: int = typer.Option(8, help="Episodes at once."),
    plugin: list[str] = typer.Option([], "--plugin", help=PLUGIN_OPTION_HELP),
) -> None:
    """Run the model -n times on each task of --tasks, print pass rates (95% Wilson intervals) and
    write data.calibration and a pass-rate difficulty back into the file (cli/calibrate.py)."""
    from rich.console import Console
    from rich.table import Table

    load_cli_plugins(plugin)
    try:
        family_info(name)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="NAME") from None
    read_task_file(tasks, name)  # a bad file fails before a model loads
    engine = open_engine(model, url=url, chat_format=chat_format, max_context=max_context, seed=seed,
                         api_key_env=api_key_env)
    label = model if url is None else f"{model} via {url}"
    stats = calibrate(name, tasks, engine, model=label, n=n, chat_format=chat_format, max_turns=max_turns,
                      max_tokens=max_tokens, temperature=temperature, seed=seed, concurrency=concurrency)
    table = Table(title=f"calibration of {tasks} ({n} episodes per task)")
    table.add_column("task", overflow="fold")
    for column in ("passed", "pass rate", "95% CI", "difficulty", "infra failed"):
        table.add_column(column)
    for entry in stats.values():
        record = entry.record(model, "")
        low, high = record["ci95"]
        rate = "-" if record["pass_rate"] is None else f"{record['pass_rate']:.2f}"
        table.add_row(entry.task_id, f"{entry.passed}/{entry.n}", rate, f"[{low:.2f}, {high:.2f}]",
                      str(record["band"] or "kept"), str(entry.failed_infra))
    Console().print(table)


def rollout_command(
    model: str = typer.Option("default", help="`default` (the shipped policy), `tiny-random` or a Hugging Face model directory."),
    env: str = typer.Option("tool-reasoning", help="Task family to draw the task from."),
    seed: int = typer.Option(0, help="Seed for the task and for sampling."),
    chat_format: str = typer.Option("minimax_m2", "--format", help="Chat format the agent is rendered in."),
    max_turns: int = typer.Option(4, help="Maximum LLM calls in the episode."),
    max_tokens: int = typer.Option(128, help="Maximum new tokens per LLM call."),
    save: str | None = typer.Option(None, help="Write the trajectory (exact token ids, logprobs, reward) as JSON here."),
    episodes: int | None = typer.Option(
        None, "-n", "--episodes", help="Run K episodes (tasks seed..seed+K-1) concurrently and print a summary table."),
    out: str | None = typer.Option(None, "--out", help="With -n: write one trajectory JSON per episode into this folder."),
    plugin: list[str] = typer.Option([], "--plugin", help=PLUGIN_OPTION_HELP),
) -> None:
    """Run one episode of the default agent on a task and print the transcript and reward;
    with -n K, run K episodes concurrently on one engine and print a summary."""
    load_cli_plugins(plugin)
    if episodes is None and out is None:
        from forgerl.cli.transcript import run_demo  # heavy: forgerl.cli.transcript, kept out of forgerl --help

        run_demo(model=model, env=env, seed=seed, chat_format=chat_format, max_turns=max_turns,
                 max_tokens=max_tokens, save_path=save)
        return
    if save is not None:
        raise typer.BadParameter("--save writes one episode; with -n/--out use --out DIR", param_hint="--save")
    run_rollouts(model=model, env=env, n=episodes or 1, seed=seed, chat_format=chat_format, max_turns=max_turns,
                 max_tokens=max_tokens, out_dir=out)
