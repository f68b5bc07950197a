"""The `forgerl` command: the app, its global options, and the one error wrapper (`run_cli`). Each
command lives in its own cli/ module (train.py, eval.py, envs.py, serve.py, ...); heavy imports
(torch, transformers, fastapi) happen inside the commands, so `forgerl --help` answers fast."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from forgerl.cli.bench import bench_app
from forgerl.cli.doctor import doctor
from forgerl.cli.engine import engine_app
from forgerl.cli.envs import envs_app, rollout_command
from forgerl.cli.errors import DEBUG_ENV, debug_requested, report, strip_debug
from forgerl.cli.eval import eval_command
from forgerl.cli.evolve import evolve_app
from forgerl.cli.gateway import gateway
from forgerl.cli.mtp import mtp_app
from forgerl.cli.perturb import perturb_app
from forgerl.cli.pretrain import pretrain
from forgerl.cli.probe import probe_command
from forgerl.cli.review import review_app, rm_app
from forgerl.cli.serve import serve
from forgerl.cli.store import store_app
from forgerl.cli.train import export, sft, train


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


def _mount_commands(app: typer.Typer) -> None:
    """Every command, each from its cli/ module. Those modules import only typer and light modules
    at their top; anything heavy is imported inside the command that needs it."""
    app.add_typer(bench_app, name="bench")
    app.add_typer(envs_app, name="envs")
    app.command("rollout")(rollout_command)
    app.add_typer(store_app, name="store")
    app.command("serve")(serve)
    app.command("train")(train)
    app.command("doctor")(doctor)
    app.command("export")(export)
    app.command("sft")(sft)
    app.command("pretrain")(pretrain)
    app.command("eval")(eval_command)
    app.command("gateway")(gateway)
    app.add_typer(engine_app, name="engine")
    app.add_typer(mtp_app, name="mtp")
    app.add_typer(perturb_app, name="perturb")
    app.command("probe")(probe_command)
    app.add_typer(review_app, name="review")
    app.add_typer(rm_app, name="rm")
    app.add_typer(evolve_app, name="evolve")


_mount_commands(app)


if __name__ == "__main__":
    app()
