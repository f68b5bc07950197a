"""A new user's whole path, as the README and docs describe it, with no forgerl source edits: a
package of their own (a task family and a chat format, in a temporary directory) → `envs validate`
→ `train CONFIG.toml` (plug-in named in the config) → `eval --model RUN:best` → `serve --model
RUN:best` → `export RUN:best`; and a mistake on the way is two lines, not a traceback. Every step
runs `python -m forgerl.cli.main` in its own process, as a user's shell would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx

from forgerl.testing import ECHO_FAMILY_SOURCE, start_cli_server

REPO_TESTS = Path(__file__).resolve().parents[1]

FAMILY_SOURCE = '''"""acme_agent: a task family and a chat format of a user's own."""
from forgerl.chat import register_format

from acme_agent.lines import AcmeLinesFormat

register_format(AcmeLinesFormat)
''' + ECHO_FAMILY_SOURCE

CONFIG = textwrap.dedent('''
    # my first run: my family, my chat format, a tiny model
    plugins = ["acme_agent"]
    model = "tiny-random"
    env = "acme-echo"
    chat_format = "acme_lines"
    steps = 2
    groups_per_step = 2
    group_size = 2
    max_turns = 2
    max_tokens = 16
    difficulty = [1]
    run_dir = "{run_dir}"

    [eval]
    every = 1
    tasks = 2
''')


def user_package(root: Path) -> Path:
    """`acme_agent/` with the family (above) and a chat format written like docs/formats.md's example."""
    package = root / "acme_agent"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAMILY_SOURCE)
    lines = (REPO_TESTS / "chat" / "user_format.py").read_text()
    lines = lines.replace('"tagged_lines"', '"acme_lines"').replace("TaggedLinesFormat", "AcmeLinesFormat")
    (package / "lines.py").write_text(lines)
    return package


def forgerl(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "forgerl.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_own_family_and_format_validate_train_eval_serve_export(tmp_path):
    user_package(tmp_path / "src")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("FORGERL_PLUGINS", None)

    # a mistake first: the family without its plug-in is two lines that say what to do
    done = forgerl(["envs", "validate", "acme-echo", "-n", "2"], env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "unknown task family 'acme-echo'" in done.stderr and "--plugin" in done.stderr

    done = forgerl(["envs", "validate", "acme-echo", "-n", "3", "--plugin", "acme_agent"], env)
    assert done.returncode == 0, done.stdout + done.stderr

    run_dir = tmp_path / "runs" / "mine"
    config = tmp_path / "mine.toml"
    config.write_text(CONFIG.format(run_dir=run_dir))
    done = forgerl(["train", str(config)], env)
    assert done.returncode == 0, done.stdout + done.stderr
    best = json.loads((run_dir / "checkpoints" / "best.json").read_text())
    assert best["step"] in (1, 2)

    out = tmp_path / "eval"
    done = forgerl(["eval", "--env", "acme-echo", "--plugin", "acme_agent", "--format", "acme_lines", "--model",
                    f"{run_dir}:best", "-n", "2", "--max-turns", "2", "--max-tokens", "16", "--out", str(out)], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((out / "eval_report.json").read_text())["env"] == "acme-echo"

    port, started = free_port(), []
    try:
        start_cli_server(["serve", "--model", f"{run_dir}:best", "--format", "acme_lines", "--plugin", "acme_agent",
                          "--served-model-name", "mine", "--port", str(port)], port, tmp_path / "serve.log", started,
                         env=env)
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=30).json()
        assert [m["id"] for m in models["data"]] == ["mine"]
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=120, json={
            "model": "mine", "messages": [{"role": "user", "content": "Submit the word pear."}], "max_tokens": 8})
        assert reply.status_code == 200, reply.text
    finally:
        for proc in started:
            proc.terminate()
            proc.wait(timeout=30)

    exported = tmp_path / "exported"
    done = forgerl(["export", f"{run_dir}:best", "--out", str(exported)], env)
    assert done.returncode == 0, done.stdout + done.stderr
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert AutoModelForCausalLM.from_pretrained(exported) is not None
    assert AutoTokenizer.from_pretrained(exported) is not None
    assert "acme-echo" in (exported / "README.md").read_text()
