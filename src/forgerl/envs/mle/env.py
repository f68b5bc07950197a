"""The mle environment: a sandbox holding train.csv, test.csv and a README; file tools, Python and
a shell to train with; `submit` scores predictions.csv against the hidden test labels.

What the sandbox cannot see: the hidden labels (they live in `task.answer`, on the host only),
forgerl's own package, and every copy of the source datasets inside the installed packages
(`datasets.DATA_DIRS`, masked in every site directory the sandbox mounts) — an agent that could
call `load_iris()` could look the answers up instead of learning them. numpy and scikit-learn stay
importable. A command that runs past the time, CPU or memory limit is killed and reported as a
tool error that names the limit; the episode goes on.

Scoring reads one file, `predictions.csv`, from the host side of the workspace: never through a
symlink, never a FIFO or device, never more than the size cap (scoring.py parses it strictly).
"""

from __future__ import annotations

import errno
import glob
import os
import site
import stat
from pathlib import Path
from typing import Any

import forgerl
from forgerl.envs.base import Environment, Family, Task, Verdict, checked_tool, register_family
from forgerl.envs.mle.datasets import DATA_DIRS
from forgerl.envs.mle.generator import DIFFICULTIES, FAMILY, generate_task, sample_task
from forgerl.envs.mle.reference import SCRIPT_NAME, THREAD_ENV, script_text
from forgerl.envs.mle.scoring import PredictionError, max_prediction_bytes, metric_value, normalized, parse_predictions
from forgerl.envs.sandbox import BACKENDS, Limits, Sandbox, available_backend, create_sandbox
from forgerl.envs.sandbox.base import python_roots
from forgerl.envs.sandbox.workspace import release_soon, workspace_path
from forgerl.envs.tool_io import clip_observation, closed_object_schema, string_argument
from forgerl.errors import ConfigError, SandboxError, ToolError, VerifierError
from forgerl.types import Message, ToolCall, ToolSpec, Trajectory

PREDICTIONS = "predictions.csv"
ALLOW_UNHIDDEN_ENV = "FORGERL_MLE_ALLOW_UNHIDDEN"
RUN_WALL_S = 120.0
DEFAULT_LIMITS = Limits(wall_s=RUN_WALL_S, cpu_s=RUN_WALL_S, memory_mb=2048, max_workspace_mb=256,
                        max_workspace_files=5000)
MAX_FILE_BYTES = 200_000
MAX_READ_LINES = 200
MAX_LINE_CHARS = 400
_ENV_PREFIX = ["/usr/bin/env", *(f"{k}={v}" for k, v in THREAD_ENV.items())]

SYSTEM_PROMPT = (
    "You are a machine-learning engineer working in a sandboxed workspace with Python, numpy and "
    "scikit-learn (no pandas, no network). Read the task, train and validate a model with run_python "
    "or run_shell, write predictions.csv (header id,prediction; one row per test id), then call "
    "submit once. Only predictions.csv is scored."
)


_PATH = {"type": "string", "description": "file path relative to the workspace, e.g. train.csv"}
_LIMITS_TEXT = f"{RUN_WALL_S:.0f} s and {DEFAULT_LIMITS.memory_mb} MB per command, no network"
TOOLS = [
    ToolSpec(name="list_files", description="List the files in the workspace with their sizes.",
             parameters=closed_object_schema({}, [])),
    ToolSpec(name="read_file", description=f"Show a file with line numbers (at most {MAX_READ_LINES} lines per call).",
             parameters=closed_object_schema({"path": _PATH, "start_line": {"type": "integer", "description": "first line, 1-based"}},
                                ["path"])),
    ToolSpec(name="write_file", description=f"Create or overwrite a text file (at most {MAX_FILE_BYTES} bytes).",
             parameters=closed_object_schema({"path": _PATH, "content": {"type": "string"}}, ["path", "content"])),
    ToolSpec(name="run_python", description=f"Run Python code in the workspace ({_LIMITS_TEXT}); returns its output.",
             parameters=closed_object_schema({"code": {"type": "string", "description": "a Python program"}}, ["code"])),
    ToolSpec(name="run_shell", description=f"Run a shell command in the workspace ({_LIMITS_TEXT}), e.g. python3 train.py.",
             parameters=closed_object_schema({"command": {"type": "string"}}, ["command"])),
    ToolSpec(name="submit", description=f"Finish: {PREDICTIONS} is scored on the hidden test labels. Only the first "
             "submission counts.", parameters=closed_object_schema({}, [])),
]


def hidden_paths() -> tuple[str, ...]:
    """forgerl's package and every copy of the source datasets in a site directory the sandbox
    mounts (what is not mounted needs no mask; `create_sandbox` drops it)."""
    dirs = set(site.getsitepackages())
    for root in python_roots():
        dirs.update(glob.glob(f"{root}/lib/python3*/site-packages"))
    found = [str(Path(forgerl.__file__).resolve().parent)]
    found += [os.path.join(d, sub) for d in sorted(dirs) for sub in DATA_DIRS if os.path.isdir(os.path.join(d, sub))]
    return tuple(found)


def new_workspace(files: dict[str, str], limits: Limits) -> Sandbox:
    """A sandbox with the task files and the answer keys masked; where the only backend cannot
    mask, a SandboxError unless FORGERL_MLE_ALLOW_UNHIDDEN=1."""
    backend = available_backend()
    if BACKENDS[backend].can_hide:
        return create_sandbox(files, limits=limits, backend=backend, hidden_paths=hidden_paths())
    if os.environ.get(ALLOW_UNHIDDEN_ENV, "").strip().lower() not in ("1", "true", "yes"):
        raise SandboxError(
            f"mle needs a sandbox that can hide scikit-learn's bundled datasets (they hold the test labels), but only "
            f"the unisolated {backend!r} backend works here. Install bubblewrap (scripts/install_system_deps.sh) or "
            f"allow user namespaces; to run anyway (debugging only, rewards untrustworthy) set {ALLOW_UNHIDDEN_ENV}=1")
    return create_sandbox(files, limits=limits, backend=backend)


def read_predictions(workspace: Path, max_bytes: int) -> bytes:
    """The bytes of predictions.csv: a regular file, not followed through a symlink, opened
    without blocking (a FIFO would hang a plain open), at most `max_bytes`."""
    try:
        fd = os.open(workspace / PREDICTIONS, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise PredictionError(f"there is no {PREDICTIONS} in the workspace") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PredictionError(f"{PREDICTIONS} is a symbolic link; write a regular file") from None
        raise PredictionError(f"{PREDICTIONS} cannot be opened: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise PredictionError(f"{PREDICTIONS} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        if info.st_size > max_bytes:
            raise PredictionError(f"{PREDICTIONS} has {info.st_size} bytes, over the {max_bytes} allowed")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PredictionError(f"{PREDICTIONS} is over the {max_bytes} bytes allowed")
    return data


def check_task(task: Task) -> dict[str, Any]:
    """The verifier spec of an mle task; ConfigError for a task that is not one."""
    spec = task.verifier
    if task.family != FAMILY or spec.get("type") != "mle" or not isinstance(task.answer, dict) or not task.answer:
        raise ConfigError(f"task {task.id!r} is not an mle task (need the verifier spec and hidden answers that "
                          "forgerl.envs.mle.generate_task writes)")
    return spec


class MleEnv(Environment):
    family = FAMILY

    def __init__(self, seed: int = 0, *, limits: Limits | None = None) -> None:
        self.seed = seed
        self.task: Task | None = None
        self.limits = limits or DEFAULT_LIMITS
        self._sandbox: Sandbox | None = None
        self._verdict: Verdict | None = None
        self._failure: str | None = None
        """Why scoring itself broke at submit (a bad task spec): verify raises it, never a zero."""

    @property
    def done(self) -> bool:
        return self._verdict is not None or self._failure is not None

    @property
    def workspace(self) -> Path:
        if self._sandbox is None:
            raise ToolError("the environment has no task: reset() it first")
        return self._sandbox.workspace

    def tools(self) -> list[ToolSpec]:
        return list(TOOLS)

    def reset(self, task: Task) -> list[Message]:
        check_task(task)
        self._discard()
        self.task, self._verdict, self._failure = task, None, None
        self._sandbox = new_workspace(dict(task.files), self.limits)
        return [Message(role="system", content=SYSTEM_PROMPT), Message(role="user", content=task.prompt)]

    async def execute(self, call: ToolCall) -> str:
        if self.task is None or self._sandbox is None:
            raise ToolError("the environment has no task: reset() it first")
        handlers = {"list_files": self._list_files, "read_file": self._read_file, "write_file": self._write_file,
                    "run_python": self._run_python, "run_shell": self._run_shell, "submit": self._submit}
        checked_tool(call, TOOLS)
        if self.done:
            raise ToolError("the predictions were already submitted; the episode is over")
        return await handlers[call.name](call.arguments)

    def verify(self, trajectory: Trajectory) -> Verdict:
        if self.task is None:
            raise VerifierError("verify() called before reset(): no task to verify against")
        if self._failure is not None:
            raise VerifierError(self._failure)
        if self._verdict is None:
            return Verdict(outcome=0.0, parts={"submitted": 0.0}, evidence={"reason": "the agent never called submit"})
        return self._verdict

    def gold_solution(self, task: Task) -> list[list[ToolCall]]:
        """The reference solution, written and run in the sandbox, then submitted."""
        return solution_rounds(task, "reference")

    async def close(self) -> None:
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            await sandbox.close()

    def _discard(self) -> None:
        """reset() is synchronous: a previous episode's sandbox is closed soon (sandbox/workspace.py)."""
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            release_soon(sandbox.close)

    # --- tools -----------------------------------------------------------------------------

    def _rel(self, path: Any) -> str:
        return workspace_path(path, self.workspace, example="train.csv")

    async def _list_files(self, args: dict[str, Any]) -> str:
        assert self._sandbox is not None
        files = self._sandbox.list_files()
        root = self.workspace
        return "\n".join(f"{rel} ({(root / rel).lstat().st_size} bytes)" for rel in files) or "The workspace is empty."

    async def _read_file(self, args: dict[str, Any]) -> str:
        assert self._sandbox is not None
        rel = self._rel(args.get("path"))
        try:
            lines = self._sandbox.read_file(rel).splitlines()
        except FileNotFoundError:
            raise ToolError(f"no file {rel!r}; list_files shows what exists") from None
        except (SandboxError, UnicodeDecodeError, IsADirectoryError) as exc:
            raise ToolError(f"cannot read {rel!r}: {exc}") from None
        start = args.get("start_line", 1)
        if isinstance(start, bool) or not isinstance(start, int) or start < 1:
            raise ToolError(f"start_line must be a positive integer, got {start!r}")
        if lines and start > len(lines):
            raise ToolError(f"{rel} has {len(lines)} lines; start_line {start} is past the end")
        end = min(len(lines), start + MAX_READ_LINES - 1)
        body = "\n".join(f"{n:>5}  {clip_observation(lines[n - 1], MAX_LINE_CHARS)}" for n in range(start, end + 1))
        more = f"\n[lines {end + 1}-{len(lines)} not shown; use start_line]" if end < len(lines) else ""
        return f"{rel} (lines {start}-{end} of {len(lines)}):\n{body}{more}"

    async def _write_file(self, args: dict[str, Any]) -> str:
        assert self._sandbox is not None
        rel, content = self._rel(args.get("path")), string_argument(args, "content")
        size = len(content.encode("utf-8"))
        if size > MAX_FILE_BYTES:
            raise ToolError(f"{rel} would be {size} bytes; files are limited to {MAX_FILE_BYTES} bytes")
        try:
            self._sandbox.write_file(rel, content)
        except SandboxError as exc:
            raise ToolError(f"cannot write {rel!r}: {exc}") from None
        return f"wrote {rel} ({len(content.splitlines())} lines)"

    async def _run(self, argv: list[str], stdin: str | None = None) -> str:
        """Run in the sandbox; a command stopped by a limit is a ToolError naming the limit."""
        assert self._sandbox is not None
        result = await self._sandbox.run([*_ENV_PREFIX, *argv], limits=self.limits, stdin=stdin)
        if result.timed_out or result.killed_reason:
            reason = result.killed_reason or f"wall-clock timeout {self.limits.wall_s:g}s"
            raise ToolError(f"the command was stopped: {reason}. Make it cheaper (fewer rows or features while "
                            f"exploring, a smaller model) and run it again.\n{clip_observation(result.observation(), 4000)}")
        return clip_observation(result.observation())

    async def _run_python(self, args: dict[str, Any]) -> str:
        code = string_argument(args, "code")
        if not code.strip():
            raise ToolError("code is empty")
        return await self._run(["python3", "-"], stdin=code)

    async def _run_shell(self, args: dict[str, Any]) -> str:
        command = string_argument(args, "command")
        if not command.strip():
            raise ToolError("command is empty")
        return await self._run(["/bin/sh", "-c", command])

    async def _submit(self, args: dict[str, Any]) -> str:
        assert self.task is not None
        try:
            self._verdict = score_workspace(self.task, self.workspace)
        except (ValueError, KeyError, TypeError, OSError) as exc:  # not the agent's file: the task or the host
            self._failure = f"scoring task {self.task.id!r} failed: {type(exc).__name__}: {exc}"
            return "Submitted. The episode is over."
        if self._sandbox is not None and not self._sandbox.isolated:
            note = "the sandbox could not hide the source datasets: labels could have been looked up"
            self._verdict.evidence["unhidden"] = note
        return "Submitted: predictions.csv was scored. The episode is over."


def score_workspace(task: Task, workspace: Path) -> Verdict:
    """The verdict on the predictions.csv in `workspace` (nothing else there is read)."""
    spec = check_task(task)
    ids, labels = list(task.answer), spec.get("labels")
    metric, baseline, reference = spec["metric"], float(spec["baseline"]), float(spec["reference"])
    parts = {"submitted": 1.0, "baseline": baseline, "reference": reference}
    evidence: dict[str, Any] = {"checked": f"{PREDICTIONS} only, parsed strictly (printed output and reports are "
                                           "ignored)", "metric_name": metric, "rows": len(ids)}
    try:
        predicted = parse_predictions(read_predictions(workspace, max_prediction_bytes(len(ids))), ids, labels=labels)
    except PredictionError as exc:
        return Verdict(outcome=0.0, parts={**parts, "valid": 0.0, "normalized": 0.0},
                       evidence={**evidence, "reason": str(exc)})
    truth = [task.answer[key] for key in ids]
    value = metric_value(metric, truth, predicted, labels or ())
    score = normalized(metric, value, baseline, reference)
    return Verdict(outcome=score, parts={**parts, "valid": 1.0, "metric": value, "normalized": score},
                   evidence=evidence)


def solution_rounds(task: Task, model: str) -> list[list[ToolCall]]:
    """Write the reference script, run it with `model` (reference, or a weak tree), submit."""
    args = " ".join([*task.data["script_args"], "--model", model])
    return [
        [ToolCall(name="write_file", arguments={"path": SCRIPT_NAME, "content": script_text()})],
        [ToolCall(name="run_shell", arguments={"command": f"python3 {SCRIPT_NAME} {args}"})],
        [ToolCall(name="submit", arguments={})],
    ]


def weak_variant(task: Task) -> dict[str, list[list[ToolCall]]]:
    """The broken variant `envs validate` plays: the same pipeline with a shallow tree, picked at
    generation time to land strictly between the trivial predictor and the reference."""
    return {f"weak model ({task.data['weak_model']})": solution_rounds(task, task.data["weak_model"])}


MLE_FAMILY = Family(
    name=FAMILY,
    make_env=MleEnv,
    sample_task=sample_task,
    description="ML engineering: train a model on a bundled dataset in the sandbox and submit test predictions; "
                "reward between a trivial predictor (0) and the reference solution (1). Difficulty 1-3.",
    difficulties=DIFFICULTIES,
    generate=generate_task,
    noop=lambda task: [[ToolCall(name="submit", arguments={})]],  # submit without predictions
    variants=weak_variant,
    validation_cost="a sandbox per episode that imports scikit-learn and trains a model (seconds each)",
)
register_family(MLE_FAMILY)
