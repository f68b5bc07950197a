"""The `forgerl` command. Heavy imports (torch, transformers, fastapi) happen inside the commands,
so `forgerl --help` answers fast."""

from __future__ import annotations

import typer

app = typer.Typer(help="forgerl: train tool-using LLM agents with RL (M2/Forge style).", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print side-by-side ratios.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@app.command()
def rollout(
    model: str = typer.Option("tiny-random", help="Built-in model name or a Hugging Face model directory."),
    env: str = typer.Option("arithmetic", help="Task family to draw the task from."),
    seed: int = typer.Option(0, help="Seed for the task and for sampling."),
    chat_format: str = typer.Option("minimax_m2", "--format", help="Chat format the agent is rendered in."),
    max_turns: int = typer.Option(4, help="Maximum LLM calls in the episode."),
    max_tokens: int = typer.Option(96, help="Maximum new tokens per LLM call."),
    save: str | None = typer.Option(None, help="Write the trajectory (exact token ids, logprobs, reward) as JSON here."),
) -> None:
    """Run one episode of the default agent on a task and print the transcript and reward."""
    from forgerl.agent.demo import run_demo

    run_demo(model=model, env=env, seed=seed, chat_format=chat_format, max_turns=max_turns, max_tokens=max_tokens,
             save_path=save)


@app.command()
def serve(
    model: str = typer.Option("tiny-random", help="Built-in model name or a Hugging Face model directory."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8000, help="TCP port."),
    chat_format: str = typer.Option("minimax_m2", "--format", help="Chat format used to render requests."),
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/models)."""
    from forgerl.server.app import serve as _serve

    _serve(model=model, host=host, port=port, chat_format=chat_format)


@bench_app.command("engine")
def bench_engine(
    model: str = typer.Option("tiny-random", help="Built-in model name or a Hugging Face model directory."),
    sessions: int = typer.Option(16, help="Concurrent agent sessions."),
    turns: int = typer.Option(10, help="Turns per session."),
    max_tokens: int = typer.Option(24, help="New tokens per turn."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
) -> None:
    """Built-in engine vs transformers' plain generate on an agent-like workload; prints the ratio."""
    from forgerl.engine.bench import run_engine_bench

    run_engine_bench(model=model, sessions=sessions, turns=turns, max_tokens=max_tokens, device=device)


if __name__ == "__main__":
    app()
