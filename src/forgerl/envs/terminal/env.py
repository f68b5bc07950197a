"""The terminal environment: a sandboxed workspace built by the task's setup script, a shell and
file tools, and the hidden test run at `submit`.

Episode: `reset` creates the sandbox with the task's files; the setup script (bash, on stdin, so
it never lands in the workspace) runs before the first tool call, and the probes the test compares
with are read right after it. At `submit` every process the agent left (its uid's) is killed,
then the checks run (checks.py): file checks from the host without following symlinks, git
plumbing with a hardened command line in a new sandbox run, and `run` checks in a fresh sandbox
holding a copy of the workspace with the task's original code laid over it. Nothing of the test
(checks, expected values, probes) is ever written into the workspace.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from forgerl.envs.base import Environment, Task, Verdict
from forgerl.envs.sandbox import BACKENDS, Limits, Sandbox, available_backend, create_sandbox
from forgerl.envs.sandbox.process import kill_uid
from forgerl.envs.sandbox.workspace import release_soon
from forgerl.envs.terminal.checks import capture_probes, run_check
from forgerl.envs.terminal.generator import FAMILY
from forgerl.envs.tool_io import clip_observation
from forgerl.errors import ConfigError, SandboxError, ToolError, VerifierError
from forgerl.types import Message, ToolCall, ToolSpec, Trajectory

SHELL_WALL_S = 60.0
MAX_READ_CHARS = 40_000
ALLOW_UNISOLATED_ENV = "FORGERL_TERMINAL_ALLOW_UNISOLATED"
SHELL_LIMITS = Limits(wall_s=SHELL_WALL_S, cpu_s=SHELL_WALL_S, memory_mb=1024, max_procs=64)
SYSTEM_PROMPT = (
    "You are working in a Linux terminal. The workspace is the current directory; run commands with "
    "run_shell (bash, each call starts in the workspace root, no network), read and write files with "
    "read_file and write_file (paths relative to the workspace). Do what the user asks, check the result, "
    "then call submit exactly once: the work is checked after that."
)


def _spec(name: str, description: str, properties: dict[str, Any], required: list[str]) -> ToolSpec:
    return ToolSpec(name=name, description=description,
                    parameters={"type": "object", "properties": properties, "required": required})


_PATH = {"type": "string", "description": "path relative to the workspace root"}
TOOLS = [
    _spec("run_shell", f"Run a bash command in the workspace root (time limit {SHELL_WALL_S:.0f} s); returns exit "
          "code, stdout and stderr.", {"command": {"type": "string"}}, ["command"]),
    _spec("read_file", "Show a text file.", {"path": _PATH}, ["path"]),
    _spec("write_file", "Create or overwrite a text file.", {"path": _PATH, "content": {"type": "string"}}, ["path", "content"]),
    _spec("submit", "Finish: the work is checked now. Only the first call counts.", {}, []),
]


def check_task(task: Task) -> None:
    """A clear ConfigError for a task that is not a terminal task (a hand-edited task file)."""
    checks = task.verifier.get("checks")
    if not isinstance(task.data.get("setup"), str) or not isinstance(checks, list) or not checks:
        raise ConfigError(f"task {task.id!r} is not a terminal task: it needs data.setup (a bash script) and "
                          "verifier.checks (a non-empty list); generate one with forgerl.envs.terminal.generate_task")
    for check in checks:
        if not isinstance(check, dict) or not isinstance(check.get("op"), str):
            raise ConfigError(f"task {task.id!r}: every verifier check is an object with an 'op', got {check!r}")


def _new_sandbox(files: dict[str, str]) -> Sandbox:
    backend = available_backend()
    if not BACKENDS[backend].isolated and os.environ.get(ALLOW_UNISOLATED_ENV) != "1":
        raise SandboxError(f"the terminal family runs setup scripts and agent commands that must stay isolated, but only "
                           f"the {backend!r} backend works here. Install bubblewrap (scripts/install_system_deps.sh) or "
                           f"allow user namespaces; set {ALLOW_UNISOLATED_ENV}=1 to run anyway (debugging only)")
    return create_sandbox(files, limits=SHELL_LIMITS, backend=backend)


class TerminalEnv(Environment):
    family = FAMILY

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.task: Task | None = None
        self._sandbox: Sandbox | None = None
        self._ready = False
        self._probes: dict[str, str] = {}
        self._verdict: Verdict | None = None

    @property
    def done(self) -> bool:
        return self._verdict is not None

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            raise ToolError("the environment has no task: reset() it first")
        return self._sandbox

    def tools(self) -> list[ToolSpec]:
        return list(TOOLS)

    def reset(self, task: Task) -> list[Message]:
        check_task(task)
        if self._sandbox is not None:
            old, self._sandbox = self._sandbox, None
            _close_soon(old)
        self.task, self._verdict, self._ready, self._probes = task, None, False, {}
        self._sandbox = _new_sandbox(task.files)
        return [Message(role="system", content=SYSTEM_PROMPT), Message(role="user", content=task.prompt)]

    async def ensure_ready(self) -> None:
        """Run the setup script and read the probes, once, before the agent's first call."""
        if self._ready:
            return
        assert self.task is not None
        setup = self.task.data["setup"]
        if setup.strip():
            result = await self.sandbox.run(["/bin/bash", "--noprofile", "--norc", "-s"], stdin="set -e\n" + setup,
                                            limits=SHELL_LIMITS)
            if not result.ok():
                raise VerifierError(f"the setup script of task {self.task.id!r} failed: {result.observation()[-1500:]}")
        self._probes = await capture_probes(self.sandbox, self.task.verifier.get("probes") or {})
        self._ready = True

    async def execute(self, call: ToolCall) -> str:
        handlers = {"run_shell": self._run_shell, "read_file": self._read_file, "write_file": self._write_file,
                    "submit": self._submit}
        handler = handlers.get(call.name)
        if handler is None:
            raise ToolError(f"unknown tool {call.name!r}; available: {', '.join(handlers)}")
        if self.done:
            raise ToolError("the work was already submitted; the episode is over")
        self.sandbox  # noqa: B018 — raises ToolError before reset
        await self.ensure_ready()
        return await handler(call.arguments)

    def verify(self, trajectory: Trajectory) -> Verdict:
        if self.task is None:
            raise VerifierError("verify() called before reset(): no task to verify against")
        if self._verdict is None:
            return Verdict(outcome=0.0, parts={"submitted": 0.0}, evidence={"reason": "the agent never called submit"})
        return self._verdict

    def gold_solution(self, task: Task) -> list[list[ToolCall]]:
        if task.gold is None:
            raise ConfigError(f"task {task.id!r} carries no gold path; terminal tasks get one from generate_task")
        return [list(round_) for round_ in task.gold]

    async def close(self) -> None:
        if self._sandbox is not None:
            sandbox, self._sandbox = self._sandbox, None
            await sandbox.close()

    # --- tools -----------------------------------------------------------------------------

    @staticmethod
    def _text(args: dict[str, Any], key: str) -> str:
        value = args.get(key)
        if not isinstance(value, str) or (key != "content" and not value.strip()):
            raise ToolError(f"{key} must be a non-empty string, got {value!r}")
        return value

    async def _run_shell(self, args: dict[str, Any]) -> str:
        command = self._text(args, "command")
        result = await self.sandbox.run(["/bin/bash", "-c", command], limits=SHELL_LIMITS)
        return clip_observation(result.observation())

    async def _read_file(self, args: dict[str, Any]) -> str:
        path = self._text(args, "path")
        try:
            return clip_observation(self.sandbox.read_file(path), MAX_READ_CHARS)
        except FileNotFoundError:
            raise ToolError(f"no file {path!r}; use run_shell `ls` or `find` to look around") from None
        except (SandboxError, UnicodeDecodeError, IsADirectoryError) as exc:
            raise ToolError(f"cannot read {path!r}: {exc}") from None

    async def _write_file(self, args: dict[str, Any]) -> str:
        path, content = self._text(args, "path"), self._text(args, "content")
        try:
            self.sandbox.write_file(path, content)
        except (SandboxError, OSError) as exc:
            raise ToolError(f"cannot write {path!r}: {exc}") from None
        return f"wrote {path} ({len(content.splitlines())} lines)"

    async def _submit(self, args: dict[str, Any]) -> str:
        self._verdict = await self.run_test()
        return "Submitted. The episode is over."

    async def run_test(self) -> Verdict:
        """The hidden test on the workspace as the agent left it, after killing what it left running."""
        assert self.task is not None
        sandbox = self.sandbox
        if sandbox.uid is not None:
            await asyncio.to_thread(kill_uid, sandbox.uid)
        overrides = self.task.verifier.get("overrides") or {}
        results = [await run_check(check, sandbox, self._probes, overrides) for check in self.task.verifier["checks"]]
        passed = sum(r.ok for r in results)
        return Verdict(
            outcome=1.0 if passed == len(results) else 0.0,
            parts={"submitted": 1.0, "checks_passed": passed / len(results)},
            evidence={"template": self.task.data.get("template"), "variant": self.task.data.get("variant"),
                      "failed": [{"check": r.name, "detail": r.detail} for r in results if not r.ok],
                      "checks": len(results)},
        )


def _close_soon(sandbox: Sandbox) -> None:
    release_soon(sandbox.close)
