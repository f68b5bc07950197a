"""`forgerl serve`: a model over an OpenAI-compatible HTTP API (the server is forgerl/server, the
vLLM supervisor forgerl/engine/vllm). Imports are function-local so `forgerl --help` does not load
fastapi, torch or a model.
"""

from __future__ import annotations

import os

import typer

from forgerl.plugins import load_cli_plugins


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
    weights_dir: str | None = typer.Option(None, envvar="FORGERL_WEIGHTS_DIR",
                                           help="Directory weight pushes name files in (the `dir` transport: this "
                                                "host's mount of the trainer's shared weights_dir; builtin engine)."),
    speculative: int | None = typer.Option(None, min=0, help="Draft tokens per decode step from the model's MTP "
                                           "heads (lossless speculative decoding; builtin engine). Default: one "
                                           "per MTP module, off without heads; 0 turns it off."),
    plugin: list[str] | None = typer.Option(None, "--plugin", show_default=False,
                                            help="Module registering your own chat format (repeatable; also "
                                                 "FORGERL_PLUGINS and entry points, see docs/formats.md)."),
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions with token-id prompts, /v1/models)."""
    if max_body_mb <= 0:
        raise typer.BadParameter(f"must be > 0, got {max_body_mb}", param_hint="--max-body-mb")
    from forgerl.cli.preflight import (  # heavy: forgerl.cli.preflight, kept out of forgerl --help
        check_chat_format,
        check_model,
        check_port_free,
    )

    load_cli_plugins(plugin or [])
    check_port_free(host, port)  # before the model loads: a port in use fails in a second, not after loading
    check_chat_format(chat_format)
    check_model(model)
    if engine == "vllm":
        from forgerl.engine.vllm import serve_vllm  # heavy: forgerl.engine, kept out of forgerl --help

        if served_model_name is not None or api_key is not None or speculative is not None:
            raise typer.BadParameter("--served-model-name, --api-key and --speculative apply to the builtin engine only",
                                     param_hint="--engine")
        serve_vllm(model, host=host, port=port, chat_format=chat_format)
        return
    if engine != "builtin":
        raise typer.BadParameter(f"unknown engine {engine!r}: use builtin or vllm", param_hint="--engine")
    from forgerl.server.app import serve as _serve  # heavy: forgerl.server, kept out of forgerl --help

    if weights_dir is not None and not os.path.isdir(weights_dir):
        raise typer.BadParameter(f"{weights_dir!r} is not a directory on this host: give the path where the "
                                 "trainer's shared weights_dir is mounted here", param_hint="--weights-dir")
    if api_key is not None and not api_key.strip():
        raise typer.BadParameter("must not be empty (leave it out to serve without a key)", param_hint="--api-key")
    _serve(model=model, host=host, port=port, chat_format=chat_format, admin_token=admin_token,
           max_body_bytes=int(max_body_mb * 1024 * 1024), served_model_name=served_model_name, api_key=api_key,
           weights_dir=weights_dir, speculative=speculative)
