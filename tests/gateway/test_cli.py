"""`forgerl gateway` as a command function (registered in cli/main.py by the lead)."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from forgerl.cli.gateway import gateway


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(gateway)
    app.command("noop")(lambda: None)  # two commands, so `gateway` is addressed by name as in forgerl
    return app


def test_help_and_refusal_to_bind_beyond_loopback_without_an_admin_key(monkeypatch):
    runner = CliRunner()
    out = runner.invoke(_app(), ["gateway", "--help"])
    assert out.exit_code == 0 and "--upstream" in out.output and "--run-dir" in out.output
    assert "--max-body-mb" in out.output
    monkeypatch.delenv("FORGERL_GATEWAY_ADMIN_KEY", raising=False)


def _refused(capsys, args: list[str], needle: str) -> None:
    """Through forgerl's command line: the error style's two lines, exit 2, no traceback."""
    from forgerl.cli.main import run_cli

    assert run_cli(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "hint: " in err and needle in err and "Traceback" not in err, err


def test_binding_beyond_loopback_needs_an_admin_key(monkeypatch, capsys):
    monkeypatch.delenv("FORGERL_GATEWAY_ADMIN_KEY", raising=False)
    _refused(capsys, ["gateway", "--host", "0.0.0.0"], "FORGERL_GATEWAY_ADMIN_KEY")


def test_a_short_admin_key_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("FORGERL_GATEWAY_ADMIN_KEY", "admin")
    _refused(capsys, ["gateway"], "shorter than 16")


def test_a_generated_admin_key_is_printed_and_written_owner_only(tmp_path, capsys):
    from forgerl.gateway.serve import announce_admin_key

    (tmp_path / "gateway-admin-key").write_text("old key of a previous start\n")
    (tmp_path / "gateway-admin-key").chmod(0o644)
    path = announce_admin_key("fgw-admin-xyz", str(tmp_path))
    assert path is not None and path.read_text() == "fgw-admin-xyz\n"
    assert path.stat().st_mode & 0o777 == 0o600  # a fresh file, not the old world-readable one
    assert "fgw-admin-xyz" in capsys.readouterr().err


def test_the_body_limit_flag_reaches_the_server(monkeypatch):
    seen = {}
    monkeypatch.setattr("forgerl.gateway.serve.serve_gateway", lambda **kw: seen.update(kw))
    monkeypatch.delenv("FORGERL_GATEWAY_ADMIN_KEY", raising=False)
    out = CliRunner().invoke(_app(), ["gateway", "--max-body-mb", "0.5"])
    assert out.exit_code == 0, out.output
    assert seen["max_body_bytes"] == 512 * 1024
    assert CliRunner().invoke(_app(), ["gateway", "--max-body-mb", "0"]).exit_code != 0
