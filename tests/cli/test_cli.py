"""`forgerl --help` must stay fast: the CLI module may not import torch, transformers or fastapi."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from forgerl.cli.main import app


def test_cli_import_is_light():
    code = "import sys, forgerl.cli.main; print(sorted(m for m in ('torch', 'transformers', 'fastapi') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_help_lists_the_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("rollout", "serve", "bench"):
        assert command in result.output
