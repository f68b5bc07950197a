"""`forgerl eval`: load a model, run it on held-out tasks of a family, print pass rates with 95%
Wilson intervals per group, and store the trajectories (`forgerl store summary OUT` reads them).

`--env reasoning-gym:SPEC` evaluates a reasoning-gym mix given on the command line
(SPEC = generator[:difficulty][*weight],...; `reasoning-gym-tools:SPEC` also offers a calculator).

The command only parses options: the settings live in forgerl/eval/settings.py and the evaluation
in forgerl/eval/run.py (`run_eval`, callable without a command line). Its imports are
function-local so `forgerl --help` does not load the environment stack.
"""

from __future__ import annotations

import typer


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
    config: str | None = typer.Option(None, "--config", help="A training config (TOML): evaluate as that run's "
                                      "held-out evaluation does — its env, model, limits, eval.tasks, "
                                      "[eval.context]/[context] manager and [verifier]; options above override it. "
                                      "A curriculum config needs --env."),
) -> None:
    """Evaluate a model on held-out tasks: pass rate with a 95% Wilson interval, per category or
    generator, trajectories written to a store. With --scaffolds: per perturbation scaffold."""
    from forgerl.eval.settings import resolve_settings  # heavy: forgerl.eval.settings, kept out of forgerl --help
    from forgerl.plugins import load_cli_plugins  # heavy: pydantic, kept out of this import (test_eval.py)

    load_cli_plugins(plugin)
    train_config = None
    if config is not None:
        from forgerl.train.config import load_config  # heavy: pydantic, kept out of this import (test_eval.py)

        train_config = load_config(config)
    if scaffolds is not None:
        # heavy: pydantic, kept out of this import (test_eval.py)
        from forgerl.cli.perturb import eval_command as scaffold_eval

        used, _ = resolve_settings(env, model, n, difficulty, seed, chat_format, max_turns, max_tokens, temperature,
                                   config=train_config)
        scaffold_eval(model=used.model, env=used.env, scaffolds=scaffolds, n=used.n, difficulty=used.difficulty or 1,
                      spec=spec, chat_format=used.chat_format, max_turns=used.max_turns, max_tokens=used.max_tokens,
                      plugin=plugin)
        return

    # errors (unknown env or format, a bad setting, a missing model) reach the CLI's one error style
    from forgerl.cli.preflight import check_model  # heavy: pydantic, kept out of this import (test_eval.py)
    from forgerl.eval.run import run_eval  # the environment stack: loaded when the command runs, not at --help

    used, _ = resolve_settings(env, model, n, difficulty, seed, chat_format, max_turns, max_tokens, temperature,
                               config=train_config)
    check_model(used.model)  # a missing directory or a bad run reference: one error, before anything loads
    run_eval(env, model, n, difficulty=difficulty, split=split, seed=seed, chat_format=chat_format,
             max_turns=max_turns, max_tokens=max_tokens, temperature=temperature, group_by=group_by, out_dir=out,
             config=train_config)
