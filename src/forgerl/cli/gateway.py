"""`forgerl gateway`: the command function (registered in cli/main.py); the gateway itself is
forgerl/gateway (serve.py). Its imports are function-local so `forgerl --help` does not load
fastapi or a model."""

from __future__ import annotations

import os

import typer

from forgerl.errors import ConfigError
from forgerl.plugins import load_cli_plugins


def gateway(
    model: str = typer.Option("tiny-random", help="`default`, `tiny-random` or a Hugging Face model directory."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8100, help="TCP port."),
    chat_format: str = typer.Option("minimax_m2", "--format", help="Chat format requests are rendered in."),
    run_dir: str | None = typer.Option(None, help="Store finished session trajectories in this run directory."),
    session_ttl_s: float = typer.Option(3600.0, help="Seconds before an un-ended session expires (then FAILED)."),
    served_model_name: str | None = typer.Option(None, help="Model id clients send (default: the model name)."),
    upstream: str | None = typer.Option(
        None, help="Instead of loading --model: forward to this OpenAI-compatible server that returns token ids "
                   "(`forgerl serve`, vLLM), e.g. http://127.0.0.1:8000. Its key: FORGERL_UPSTREAM_API_KEY."),
    max_body_mb: float = typer.Option(8.0, help="Largest request body accepted, in MiB (larger ones get 413)."),
    plugin: list[str] | None = typer.Option(None, "--plugin", show_default=False,
                                            help="Module registering your own task family or chat format "
                                                 "(repeatable; also FORGERL_PLUGINS and entry points)."),
) -> None:
    """Serve the recording gateway: an OpenAI-compatible endpoint per rollout session for black-box
    agents; every call is recorded with exact token ids. Open sessions with POST /sessions and the
    admin key: FORGERL_GATEWAY_ADMIN_KEY, or else a generated one printed at start (and written to
    RUN_DIR/gateway-admin-key, mode 0600). Off loopback the key must be set (FORGERL_GATEWAY_ADMIN_KEY)."""
    admin_key = os.environ.get("FORGERL_GATEWAY_ADMIN_KEY") or None
    new_key = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    if host not in ("127.0.0.1", "localhost", "::1") and admin_key is None:
        raise ConfigError(f"binding the gateway to {host} (beyond loopback) needs FORGERL_GATEWAY_ADMIN_KEY set",
                          hint=f"export FORGERL_GATEWAY_ADMIN_KEY=$({new_key}), or bind 127.0.0.1")
    if admin_key is not None and len(admin_key) < 16:
        raise ConfigError("FORGERL_GATEWAY_ADMIN_KEY is shorter than 16 characters",
                          hint=f"use a long random key ({new_key}) or unset it to have one generated")
    if max_body_mb <= 0:
        raise typer.BadParameter(f"must be > 0, got {max_body_mb}", param_hint="--max-body-mb")
    from forgerl.cli.preflight import (  # heavy: forgerl.cli.preflight, kept out of forgerl --help
        check_chat_format,
        check_port_free,
    )

    load_cli_plugins(plugin or [])
    check_port_free(host, port)  # fail fast, before a model is loaded
    check_chat_format(chat_format)
    from forgerl.gateway.serve import serve_gateway  # heavy: forgerl.gateway, kept out of forgerl --help

    serve_gateway(model=model, host=host, port=port, chat_format=chat_format, run_dir=run_dir, admin_key=admin_key,
                  session_ttl_s=session_ttl_s, served_model_name=served_model_name, upstream=upstream,
                  upstream_api_key=os.environ.get("FORGERL_UPSTREAM_API_KEY") or None,
                  max_body_bytes=int(max_body_mb * 1024 * 1024))
