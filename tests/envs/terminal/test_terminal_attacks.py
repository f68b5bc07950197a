"""Attacks on the terminal verifier and sandbox: nothing the agent plants or leaves running may
make the hidden test pass, and its tools cannot reach the network or write outside the workspace."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from pathlib import Path

import pytest

from forgerl.envs.base import make_env
from forgerl.envs.sandbox import create_sandbox
from forgerl.envs.terminal import generate_task, seed_of
from forgerl.envs.terminal.checks import run_check
from forgerl.errors import ToolError, VerifierError
from forgerl.types import ToolCall


def shell(command: str) -> ToolCall:
    return ToolCall(name="run_shell", arguments={"command": command})


def write(path: str, content: str) -> ToolCall:
    return ToolCall(name="write_file", arguments={"path": path, "content": content})


def _answer(task) -> str:
    return next(c["text"] for c in task.verifier["checks"] if c["op"] == "file")


SHIMS = [
    write("bin/git", "#!/bin/sh\necho SHIM_RAN > shim-ran\necho 'Update'\n"),
    write(".bashrc", "alias git='echo ALIAS_RAN > alias-ran; true'\nexport PATH=$PWD/bin:$PATH\n"),
    write(".profile", "export PATH=$PWD/bin:$PATH\n"),
    write(".gitconfig", "[alias]\n\tlog = !echo GLOBAL_ALIAS_RAN > global-ran\n[core]\n\tfsmonitor = echo FSMON > fsmon-ran\n"),
    shell("chmod +x bin/git && git config core.fsmonitor 'echo FSMON > fsmon-ran' && "
          "git config core.hooksPath hooks && mkdir -p hooks && printf '#!/bin/sh\\necho HOOK > hook-ran\\n' > hooks/post-checkout"),
    write("test.sh", "#!/bin/sh\necho PASS\nexit 0\n"),
    write("tests/test_task.sh", "#!/bin/sh\necho 'all checks passed'\nexit 0\n"),
    write(".terminal_test.json", '{"outcome": 1.0}\n'),
    shell("echo 'outcome: 1.0 checks passed'"),
]


def test_shims_aliases_bashrc_and_planted_tests_do_not_pass_a_git_task(play) -> None:
    task = generate_task(seed_of("git", 0, False), 1)
    async def main():
        env = make_env("terminal")
        try:
            env.reset(task)
            for call in [*SHIMS, ToolCall(name="submit", arguments={})]:
                await env.execute(call)
            verdict = env.verify(None)  # type: ignore[arg-type]
            planted = sorted(p.name for p in env.sandbox.workspace.iterdir() if p.name.endswith("-ran"))
            return verdict, planted
        finally:
            await env.close()

    verdict, ran = asyncio.run(main())
    assert verdict.outcome == 0.0
    assert ran == [], f"the verifier ran the agent's {ran}"


def test_shims_do_not_break_a_real_solution(play) -> None:
    """The same plants next to a real commit: the verifier ignores them and sees the commit."""
    task = generate_task(seed_of("git", 0, False), 1)
    gold = [ToolCall(name=c.name, arguments=c.arguments) for round_ in task.gold[:-1] for c in round_]
    assert play(task, *gold, *SHIMS[:4]).score == 1.0


def test_a_background_process_that_writes_the_answer_after_submit_does_not_count(play) -> None:
    task = generate_task(seed_of("text", 0, False), 1)
    answer = _answer(task)
    sneaky = shell(f"setsid nohup sh -c 'sleep 1; printf \"{answer}\" > answer.txt' >/dev/null 2>&1 & "
                   f"(sleep 1; printf '{answer}' > answer.txt) & disown; echo started")
    assert play(task, sneaky).score == 0.0

    async def later() -> str:
        env = make_env("terminal")
        try:
            env.reset(task)
            await env.execute(sneaky)
            await env.execute(ToolCall(name="submit", arguments={}))
            await asyncio.sleep(1.6)  # the writer would have fired after 1 s
            return "answer.txt present" if (env.sandbox.workspace / "answer.txt").exists() else "absent"
        finally:
            await env.close()

    assert asyncio.run(later()) == "absent"  # the leftover process was dead before the test ran and stays dead


def test_a_symlinked_answer_or_outside_file_is_refused(play) -> None:
    task = generate_task(seed_of("processes", 0, False), 1)
    expected = _answer(task)
    assert play(task, write("elsewhere.txt", expected), shell("mkdir -p out && ln -s ../elsewhere.txt out/job.out")).score == 0.0
    assert play(task, shell("mkdir -p out && ln -s /etc/passwd out/job.out")).score == 0.0
    assert play(task, shell("ln -s /etc out")).score == 0.0


def test_editing_the_service_code_instead_of_its_config_does_not_pass(play) -> None:
    task = generate_task(seed_of("service", 0, False), 1)
    expected = task.verifier["checks"][0]["stdout"]
    port = expected and task.prompt.split("port ")[1].split(",")[0]
    fake = ("import http.server\nclass H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n"
            f"        self.send_response(200); self.end_headers(); self.wfile.write({expected!r}.encode())\n"
            f"http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n")
    assert play(task, write("service/app.py", fake)).score == 0.0


def test_a_makefile_that_fakes_the_program_does_not_pass(play) -> None:
    task = generate_task(seed_of("build", 0, False), 1)
    fake = "all:\n\tmkdir -p build && printf '#!/bin/sh\\necho \"mix($$1) = 0\"\\n' > build/app && chmod +x build/app\n"
    assert play(task, write("Makefile", fake)).score == 0.0


def test_rewritten_history_cannot_move_the_probed_answer(play) -> None:
    """The commit that introduced the string is read right after setup: rewriting the repository so
    that another commit looks like it does not change the expected answer."""
    task = generate_task(seed_of("git", 0, False), 2)
    rewrite = shell("git checkout -q --orphan fresh && git add -A && git commit -q -m squashed && "
                    "git branch -M fresh main && git log --format=%H -1 > answer.txt")
    assert play(task, rewrite).score == 0.0


def test_a_hostile_check_list_cannot_run_porcelain_git() -> None:
    async def main() -> None:
        async with create_sandbox({}) as sandbox:
            with pytest.raises(VerifierError, match="only"):
                await run_check({"op": "git", "args": ["merge", "x"], "text": ""}, sandbox, {}, {})
            with pytest.raises(VerifierError, match="unknown terminal check op"):
                await run_check({"op": "exec", "path": "x"}, sandbox, {}, {})

    asyncio.run(main())


# --- the sandbox's security properties, through this family's tools ------------------------------


def _serve_once(port_box: list[int], hits: list[int]) -> threading.Thread:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(8)
    port_box.append(server.getsockname()[1])

    def accept() -> None:
        try:
            conn, _ = server.accept()
            hits.append(1)
            conn.close()
        except OSError:
            pass
        finally:
            server.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return thread


def test_no_network_and_no_writes_outside_the_workspace(tmp_path: Path) -> None:
    port, hits = [], []
    thread = _serve_once(port, hits)
    outside = tmp_path / f"pwned-{uuid.uuid4().hex}"

    async def main() -> list[str]:
        env = make_env("terminal")
        try:
            env.reset(generate_task(seed_of("text", 0, False), 1))
            outs = [await env.execute(shell(f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port[0]}), 2)\"")),
                    await env.execute(shell("python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), 2)\"")),
                    await env.execute(shell(f"echo x > {outside}; echo x > /etc/pwned; touch /usr/pwned; echo done"))]
            for path in ("../escape.txt", "/etc/pwned", str(outside)):
                with pytest.raises(ToolError):
                    await env.execute(write(path, "x"))
            await env.execute(shell(f"ln -s {tmp_path} link"))
            with pytest.raises(ToolError):
                await env.execute(write("link/pwned.txt", "x"))
            return outs
        finally:
            await env.close()

    outs = asyncio.run(main())
    thread.join(timeout=1)  # a connection would already be queued; no need to wait for the accept timeout
    assert hits == [], "a sandboxed command reached a host server on 127.0.0.1"
    assert "exit code: 0" not in outs[0] and "exit code: 0" not in outs[1]
    assert not outside.exists() and not Path("/etc/pwned").exists() and not Path("/usr/pwned").exists()
    assert not (tmp_path / "pwned.txt").exists()


def test_symlinks_elsewhere_in_the_workspace_do_not_break_a_real_fix(play) -> None:
    """The fresh check sandbox copies regular files only: a symlink the agent made is skipped, not
    followed, and the rest of the workspace still builds."""
    task = generate_task(seed_of("build", 0, False), 2)
    gold = [c for round_ in task.gold[:-1] for c in round_]
    assert play(task, *gold, shell("ln -s src/main.c alias.c && ln -s /etc/passwd pw")).score == 1.0
