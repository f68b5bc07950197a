"""The appdev environment: build the app the user asked for in a sandboxed workspace, then
`submit` it to a verifier that drives it in a real browser.

The agent starts with an empty workspace (so doing nothing has no page to serve: the execution
gate fails and the outcome is 0) and has file tools, a shell without network (`node --check
app.js` and `python3 -m py_compile server.py` work) and `submit`. At `submit` only the app's
files are copied out of the workspace (text files with the suffixes in APP_SUFFIXES, within
MAX_APP_FILES / MAX_FILE_BYTES / MAX_APP_BYTES; nothing under a dot-directory or __pycache__)
and judged against the task's hidden rubric by the process's app verifier: the deterministic
rubric executor (executor.py `verify_app`) unless a run chose a model verifier
(verifier_config.set_app_verifier). The outcome is the rubric pass rate behind the execution gate
(rubric.outcome); every item's verdict, with its evidence, lands in the verdict's evidence.

Evidence files (screenshots) are written under an evidence directory per episode. By default it
is a temporary directory removed at `close()`; with `evidence_root` (or the environment variable
FORGERL_APPDEV_EVIDENCE naming a directory, or a run's `[verifier] keep_evidence`:
verifier_config.set_evidence_root) each episode writes into its own subdirectory there
and keeps it, so the review app can show the screenshots (evidence["evidence_dir"] says where).

Infrastructure failures at `submit` (the browser or the sandbox failing) raise VerifierError out
of the tool: the agent loop ends such an episode as an infrastructure failure, never a zero.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import forgerl
from forgerl.envs.appdev.generator import FAMILY, gold_files, task_rubric
from forgerl.envs.appdev.rubric import GATE_ID, AppReport, ItemVerdict, Rubric
from forgerl.envs.appdev.verifier_config import AppVerifier, app_verifier_override
from forgerl.envs.appdev.verifier_config import evidence_root as run_evidence_root
from forgerl.envs.base import Environment, Task, Verdict, checked_tool
from forgerl.envs.sandbox import BACKENDS, Limits, Sandbox, available_backend, create_sandbox, remove_tree
from forgerl.envs.sandbox.workspace import release_soon, workspace_path
from forgerl.envs.tool_io import clip_observation, closed_object_schema, string_argument
from forgerl.errors import SandboxError, ToolError, VerifierError
from forgerl.types import Message, ToolCall, ToolSpec, Trajectory

EVIDENCE_ENV = "FORGERL_APPDEV_EVIDENCE"
ALLOW_UNHIDDEN_ENV = "FORGERL_APPDEV_ALLOW_UNHIDDEN"
APP_SUFFIXES = (".html", ".htm", ".css", ".js", ".mjs", ".json", ".py", ".svg", ".txt")
MAX_APP_FILES = 40
MAX_FILE_BYTES = 200_000
MAX_APP_BYTES = 1_000_000
MAX_READ_LINES = 400
SHELL_WALL_S = 30.0

SYSTEM_PROMPT = """You are a web developer. You build the app the user asks for in your workspace with the tools, then call submit once.

## Stack
Plain HTML, CSS and JavaScript, with index.html as the entry page; when the user asks for a backend, a Python standard-library server (server.py, started as `python3 server.py PORT`). There is no network: no CDNs, packages or external files.

## Contract
Use exactly the element ids, classes, texts and formats the user names: the app is checked by driving it in a real browser through those names, with values you have not seen, so compute results instead of showing examples.

## Quality
The page must load without errors, fit a phone screen (375 px wide) without horizontal scrolling, keep text readable (contrast at least 4.5:1) and never let controls overlap.

## Checking
Before submitting, check your files: `node --check file.js` for scripts, `python3 -m py_compile server.py` for a server."""


_PATH = {"type": "string", "description": "file path relative to the workspace root, e.g. index.html"}
TOOLS = [
    ToolSpec(name="list_files", description="List the files in the workspace with their sizes.",
             parameters=closed_object_schema({}, [])),
    ToolSpec(name="read_file", description=f"Show a file with line numbers (at most {MAX_READ_LINES} lines per call).",
             parameters=closed_object_schema({"path": _PATH, "start_line": {"type": "integer", "description": "first line, 1-based"}},
                                ["path"])),
    ToolSpec(name="write_file", description=f"Create or overwrite a text file (at most {MAX_FILE_BYTES} bytes).",
             parameters=closed_object_schema({"path": _PATH, "content": {"type": "string"}}, ["path", "content"])),
    ToolSpec(name="edit_file", description="Replace old_text (which must occur exactly once) with new_text in a file.",
             parameters=closed_object_schema({"path": _PATH, "old_text": {"type": "string"}, "new_text": {"type": "string"}},
                                ["path", "old_text", "new_text"])),
    ToolSpec(name="run_shell",
             description=f"Run a shell command in the workspace (no network, {SHELL_WALL_S:.0f} s limit), e.g. node --check app.js.",
             parameters=closed_object_schema({"command": {"type": "string"}}, ["command"])),
    ToolSpec(name="submit", description="Finish: the app in the workspace is tested in a browser. Only the first submission counts.",
             parameters=closed_object_schema({}, [])),
]


def _hidden_paths() -> tuple[str, ...]:
    """forgerl's package directory: it holds the templates, i.e. every task's gold app."""
    return (str(Path(forgerl.__file__).resolve().parent),)


def new_workspace(limits: Limits) -> Sandbox:
    """An empty sandbox with forgerl's own package hidden (the gold apps live there); on a machine
    whose only backend cannot hide paths, a SandboxError unless FORGERL_APPDEV_ALLOW_UNHIDDEN=1."""
    backend = available_backend()
    if BACKENDS[backend].can_hide:
        return create_sandbox({}, limits=limits, backend=backend, hidden_paths=_hidden_paths())
    if os.environ.get(ALLOW_UNHIDDEN_ENV, "").strip().lower() not in ("1", "true", "yes"):
        raise SandboxError(
            f"appdev needs a sandbox that can hide forgerl's package (it holds the reference apps), but only the "
            f"unisolated {backend!r} backend works here. Install bubblewrap (scripts/install_system_deps.sh) or "
            f"allow user namespaces; to run anyway (debugging only, rewards untrustworthy) set {ALLOW_UNHIDDEN_ENV}=1")
    return create_sandbox({}, limits=limits, backend=backend)


async def _default_verifier(files: dict[str, str], rubric: Rubric, request: str, evidence_dir: Path | None) -> AppReport:
    from forgerl.envs.appdev.executor import verify_app  # heavy: Playwright is imported by the browser module

    return await verify_app(files, rubric, evidence_dir=evidence_dir)


def gate_without_entry(rubric: Rubric, files: dict[str, str]) -> AppReport | None:
    """The verdict when the app's entry file is missing (index.html, or the server script): the
    gate fails without starting a browser. None when the entry is there."""
    entry = rubric.server.script if rubric.server.kind == "python" else "index.html"
    if entry in files:
        return None
    reason = f"no {entry} in the workspace: nothing to serve"
    not_run = [ItemVerdict(id=i.id, layer=i.layer, passed=False, reason="not checked: the execution gate failed")
               for i in rubric.items]
    return AppReport(gate=ItemVerdict(id=GATE_ID, layer="execution", passed=False, reason=reason), items=not_run,
                     verifier="none")


class AppDevEnv(Environment):
    family = FAMILY

    def __init__(self, seed: int = 0, *, verifier: AppVerifier | None = None, evidence_root: Path | str | None = None,
                 limits: Limits | None = None) -> None:
        self.seed = seed
        self.task: Task | None = None
        self._verifier = verifier
        root = evidence_root if evidence_root is not None else os.environ.get(EVIDENCE_ENV) or run_evidence_root()
        self._evidence_root = Path(root) if root else None
        self._limits = limits or Limits(wall_s=SHELL_WALL_S, cpu_s=SHELL_WALL_S, memory_mb=1024,
                                        max_workspace_mb=64, max_workspace_files=2000)
        self._sandbox: Sandbox | None = None
        self._rubric: Rubric | None = None
        self._verdict: Verdict | None = None
        self._temp_evidence: Path | None = None

    # --- protocol --------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._verdict is not None

    def tools(self) -> list[ToolSpec]:
        return list(TOOLS)

    def reset(self, task: Task) -> list[Message]:
        rubric = task_rubric(task)  # a ConfigError for a task that is not appdev's
        self._discard()
        self.task, self._rubric, self._verdict = task, rubric, None
        self._sandbox = new_workspace(self._limits)
        return [Message(role="system", content=SYSTEM_PROMPT), Message(role="user", content=task.prompt)]

    async def execute(self, call: ToolCall) -> str:
        if self.task is None or self._sandbox is None:
            raise ToolError("the environment has no task: reset() it first")
        handlers = {"list_files": self._list_files, "read_file": self._read_file, "write_file": self._write_file,
                    "edit_file": self._edit_file, "run_shell": self._run_shell, "submit": self._submit}
        checked_tool(call, TOOLS)
        if self.done:
            raise ToolError("the app was already submitted; the episode is over")
        return await handlers[call.name](call.arguments)

    def verify(self, trajectory: Trajectory) -> Verdict:
        if self.task is None:
            raise VerifierError("verify() called before reset(): no task to verify against")
        if self._verdict is None:
            return Verdict(outcome=0.0, parts={"submitted": 0.0}, evidence={"reason": "the agent never called submit"})
        return self._verdict

    def gold_solution(self, task: Task) -> list[list[ToolCall]]:
        writes = [ToolCall(name="write_file", arguments={"path": path, "content": text})
                  for path, text in gold_files(task).items()]
        return [writes, [ToolCall(name="submit", arguments={})]]

    async def close(self) -> None:
        sandbox, evidence = self._sandbox, self._temp_evidence
        self._sandbox = self._temp_evidence = None
        await _release(sandbox, evidence)

    def _discard(self) -> None:
        """reset() is synchronous: a previous episode's sandbox and temporary evidence are released
        soon (sandbox/workspace.py)."""
        sandbox, evidence = self._sandbox, self._temp_evidence
        self._sandbox = self._temp_evidence = None
        if sandbox is not None or evidence is not None:
            release_soon(lambda: _release(sandbox, evidence))

    # --- paths -----------------------------------------------------------------------------

    def _rel(self, path: Any) -> str:
        assert self._sandbox is not None
        return workspace_path(path, self._sandbox.workspace, example="index.html")

    def _read_text(self, rel: str) -> str:
        assert self._sandbox is not None
        try:
            return self._sandbox.read_file(rel, max_bytes=MAX_FILE_BYTES)
        except FileNotFoundError:
            raise ToolError(f"no file {rel!r}; list_files shows what exists") from None
        except (SandboxError, UnicodeDecodeError, IsADirectoryError) as exc:
            raise ToolError(f"cannot read {rel!r}: {exc}") from None

    # --- tools -----------------------------------------------------------------------------

    async def _list_files(self, args: dict[str, Any]) -> str:
        assert self._sandbox is not None
        files = self._sandbox.list_files()
        if not files:
            return "The workspace is empty."
        root = self._sandbox.workspace
        return "\n".join(f"{rel} ({(root / rel).lstat().st_size} bytes)" for rel in files)  # lstat: a link is not followed out

    async def _read_file(self, args: dict[str, Any]) -> str:
        rel = self._rel(args.get("path"))
        lines = self._read_text(rel).splitlines()
        start = args.get("start_line", 1)
        if isinstance(start, bool) or not isinstance(start, int) or start < 1:
            raise ToolError(f"start_line must be a positive integer, got {start!r}")
        if lines and start > len(lines):
            raise ToolError(f"{rel} has {len(lines)} lines; start_line {start} is past the end")
        end = min(len(lines), start + MAX_READ_LINES - 1)
        body = "\n".join(f"{n:>5}  {lines[n - 1]}" for n in range(start, end + 1))
        more = f"\n[lines {end + 1}-{len(lines)} not shown; use start_line]" if end < len(lines) else ""
        return f"{rel} (lines {start}-{end} of {len(lines)}):\n{body}{more}"

    def _store(self, rel: str, content: str) -> None:
        assert self._sandbox is not None
        size = len(content.encode("utf-8"))
        if size > MAX_FILE_BYTES:
            raise ToolError(f"{rel} would be {size} bytes; files are limited to {MAX_FILE_BYTES} bytes (split it)")
        try:
            self._sandbox.write_file(rel, content)
        except SandboxError as exc:
            raise ToolError(f"cannot write {rel!r}: {exc}") from None

    async def _write_file(self, args: dict[str, Any]) -> str:
        rel, content = self._rel(args.get("path")), string_argument(args, "content")
        self._store(rel, content)
        return f"wrote {rel} ({len(content.splitlines())} lines)"

    async def _edit_file(self, args: dict[str, Any]) -> str:
        rel = self._rel(args.get("path"))
        old, new = string_argument(args, "old_text"), string_argument(args, "new_text")
        if not old:
            raise ToolError("old_text is empty; to create a file use write_file")
        text = self._read_text(rel)
        count = text.count(old)
        if count != 1:
            raise ToolError(f"old_text occurs {count} times in {rel}; it must occur exactly once (copy the exact "
                            "text, with more surrounding lines if it repeats)")
        self._store(rel, text.replace(old, new, 1))
        return f"edited {rel}"

    async def _run_shell(self, args: dict[str, Any]) -> str:
        assert self._sandbox is not None
        command = string_argument(args, "command")
        if not command.strip():
            raise ToolError("command is empty")
        result = await self._sandbox.run(command, limits=self._limits)
        return clip_observation(result.observation())

    async def _submit(self, args: dict[str, Any]) -> str:
        assert self.task is not None and self._rubric is not None
        files, skipped = self._app_files()
        report = gate_without_entry(self._rubric, files)
        evidence_dir = None
        if report is None:
            evidence_dir = self._evidence_dir()
            verifier = self._verifier or app_verifier_override() or _default_verifier
            report = await verifier(files, self._rubric, self.task.prompt, evidence_dir)
        self._verdict = _verdict(report, files, skipped, evidence_dir)
        return "Submitted: the app is being tested. The episode is over."

    def _app_files(self) -> tuple[dict[str, str], list[str]]:
        """The app's files (see APP_SUFFIXES and the limits); what was left out, with why."""
        assert self._sandbox is not None
        files: dict[str, str] = {}
        skipped: list[str] = []
        total = 0
        for rel in self._sandbox.list_files():
            parts = rel.split("/")
            if any(p.startswith(".") or p == "__pycache__" for p in parts) or not rel.endswith(APP_SUFFIXES):
                skipped.append(f"{rel} (not an app file)")
                continue
            path = self._sandbox.workspace / rel
            if path.is_symlink() or not path.resolve().is_relative_to(self._sandbox.workspace.resolve()):
                skipped.append(f"{rel} (a link)")
                continue
            size = path.stat().st_size
            if size > MAX_FILE_BYTES or total + size > MAX_APP_BYTES or len(files) >= MAX_APP_FILES:
                skipped.append(f"{rel} (over the limits: {MAX_FILE_BYTES} bytes a file, {MAX_APP_BYTES} in all, "
                               f"{MAX_APP_FILES} files)")
                continue
            raw = path.read_bytes()
            try:
                files[rel] = raw.decode("utf-8")
            except UnicodeDecodeError:
                skipped.append(f"{rel} (not UTF-8 text)")
                continue
            total += size
        return files, skipped

    def _evidence_dir(self) -> Path:
        assert self.task is not None
        if self._evidence_root is not None:
            path = self._evidence_root / f"{self.task.id}-{secrets.token_hex(4)}"
            path.mkdir(parents=True, exist_ok=False)
            return path
        self._temp_evidence = Path(tempfile.mkdtemp(prefix="forgerl-appdev-evidence-"))
        return self._temp_evidence


async def _release(sandbox: Sandbox | None, evidence: Path | None) -> None:
    if sandbox is not None:
        await sandbox.close()
    if evidence is not None:
        await asyncio.to_thread(remove_tree, evidence)


def _verdict(report: AppReport, files: dict[str, str], skipped: list[str], evidence_dir: Path | None) -> Verdict:
    """The episode's verdict: outcome = the report's (gate, then pass rate); one part per item."""
    parts = {"submitted": 1.0, "gate": float(report.gate.passed),
             "pass_rate": sum(i.passed for i in report.items) / len(report.items) if report.items else 1.0}
    parts |= {f"item/{i.id}": float(i.passed) for i in report.items}
    evidence = {
        "checked": "the submitted app in a browser: the execution gate, then each rubric item",
        "verifier": report.verifier,
        "seconds": report.seconds,
        "browser_peak_rss_mb": report.browser_peak_rss_mb,
        "gate": report.gate.model_dump(mode="json"),
        "items": [i.model_dump(mode="json") for i in report.items],
        "evidence_dir": str(evidence_dir) if evidence_dir is not None else None,
        "files": sorted(files),
        "skipped_files": skipped,
    }
    return Verdict(outcome=report.outcome, parts=parts, evidence=evidence)
