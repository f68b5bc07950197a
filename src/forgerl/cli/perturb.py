"""`forgerl perturb ...`: preview perturbations and evaluate a policy per scaffold.

Registered in cli/main.py with `app.add_typer(perturb_app, name="perturb")`; the perturbations
themselves are forgerl/perturb. Heavy imports (torch, the engine, the environments) are
function-local so `forgerl --help` stays fast.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from forgerl.perturb.spec import PerturbSpec, scaffold_set
from forgerl.plugins import load_cli_plugins

if TYPE_CHECKING:
    from rich.console import Console

    from forgerl.perturb.evaluate import ScaffoldResult

perturb_app = typer.Typer(help="Perturbations of the agent's operational space: preview, held-out scaffolds.",
                          no_args_is_help=True)


def load_spec(path: str | None, probability: float, strength: float) -> PerturbSpec:
    """A spec from a TOML file (a `[perturb]` table, or the spec's fields at top level), else every
    dimension at `probability` and `strength`."""
    from pydantic import ValidationError

    if path is None:
        return PerturbSpec.uniform(probability, strength)
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise typer.BadParameter(f"spec file {path} does not exist", param_hint="--spec") from None
    except tomllib.TOMLDecodeError as exc:
        raise typer.BadParameter(f"spec file {path} is not valid TOML: {exc}", param_hint="--spec") from None
    try:
        return PerturbSpec.model_validate(data.get("perturb", data))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in exc.errors())
        raise typer.BadParameter(f"invalid perturbation spec in {path}: {problems}", param_hint="--spec") from None


@perturb_app.command("show")
def show_command(
    env: str = typer.Option("tool-reasoning", help="Task family."),
    seed: int = typer.Option(0, help="Task seed, also the perturbation seed."),
    difficulty: int | None = typer.Option(None, help="Difficulty level (families with a dial)."),
    probability: float = typer.Option(1.0, help="Chance each dimension fires (without --spec)."),
    strength: float = typer.Option(0.5, help="How much each dimension changes, 0..1 (without --spec)."),
    spec: str | None = typer.Option(None, help="TOML file with a [perturb] table (PerturbSpec)."),
    chat_format: str = typer.Option("minimax_m2", "--format", help="The run's own chat format."),
    plugin: list[str] = typer.Option([], "--plugin", help="Module registering your own family or chat format (a "
                                     "module name or a .py path; repeatable). See docs/environments.md."),
) -> None:
    """Print the original and the perturbed episode side by side (tools, prompts, gold path, results)."""
    from forgerl.perturb.show import show  # heavy: forgerl.perturb.show, kept out of forgerl --help

    load_cli_plugins(plugin)

    try:
        show(env, seed, load_spec(spec, probability, strength), difficulty=difficulty, chat_format=chat_format)
    except (KeyError, ValueError) as exc:
        raise typer.BadParameter(str(exc.args[0] if exc.args else exc)) from None


@perturb_app.command("eval")
def eval_command(
    model: str = typer.Option("default", help="`default`, `tiny-random` or a Hugging Face model directory."),
    env: str = typer.Option("tool-reasoning", help="Task family."),
    scaffolds: str = typer.Option("heldout", help="default, heldout (default + every held-out setting) or all."),
    n: int = typer.Option(32, "-n", help="Held-out tasks per scaffold."),
    difficulty: int = typer.Option(1, help="Difficulty level of the tasks."),
    spec: str | None = typer.Option(None, help="TOML file whose [perturb] table declares the held-out settings."),
    chat_format: str = typer.Option("minimax_m2", "--format", help="The policy's own chat format."),
    max_turns: int = typer.Option(8, help="LLM calls per episode."),
    max_tokens: int = typer.Option(96, help="New tokens per LLM call."),
    plugin: list[str] = typer.Option([], "--plugin", help="Module registering your own family or chat format (a "
                                     "module name or a .py path; repeatable). See docs/environments.md."),
) -> None:
    """Success rate (Wilson 95% CI) and mean reward per scaffold, greedy, on held-out tasks."""
    from rich.console import Console

    from forgerl.engine import load_engine  # heavy: forgerl.engine, kept out of forgerl --help
    from forgerl.perturb.evaluate import (
        evaluate_scaffolds,  # heavy: forgerl.perturb.evaluate, kept out of forgerl --help
    )

    load_cli_plugins(plugin)

    try:
        chosen = scaffold_set(scaffolds, load_spec(spec, 0.5, 0.5))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scaffolds") from None
    engine = load_engine(model, chat_format=chat_format, max_context=1536)
    results = evaluate_scaffolds(engine, env, chosen, n, chat_format=chat_format, difficulty=(difficulty,),
                                 max_turns=max_turns, max_tokens=max_tokens)
    print_results(Console(), results)


def print_results(console: Console, results: list[ScaffoldResult]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="reward per scaffold (success rate with Wilson 95% CI)")
    for column in ("scaffold", "held out", "n", "success", "95% CI", "mean reward", "failed"):
        table.add_column(column)
    for r in results:
        table.add_row(escape(r.scaffold), "yes" if r.held_out else "", str(r.n), f"{r.success_rate:.3f}",
                      escape(f"[{r.ci_low:.3f}, {r.ci_high:.3f}]"), f"{r.mean_reward:.3f}", str(r.failed))
    console.print(table)
