"""`forgerl gateway` as a command function (registered in cli/main.py by the lead)."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from forgerl.gateway.cli import gateway


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(gateway)
    app.command("noop")(lambda: None)  # two commands, so `gateway` is addressed by name as in forgerl
    return app


def test_help_and_refusal_to_bind_beyond_loopback_without_an_admin_key(monkeypatch):
    runner = CliRunner()
    out = runner.invoke(_app(), ["gateway", "--help"])
    assert out.exit_code == 0 and "--upstream" in out.output and "--run-dir" in out.output
    monkeypatch.delenv("FORGERL_GATEWAY_ADMIN_KEY", raising=False)
    out = runner.invoke(_app(), ["gateway", "--host", "0.0.0.0"])
    assert out.exit_code != 0 and "FORGERL_GATEWAY_ADMIN_KEY" in out.output
