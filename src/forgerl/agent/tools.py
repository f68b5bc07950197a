"""Running the tool calls of one completion: check them against their specs, run them in parallel,
and turn every failure into an observation the model reads (contract 4: a bad call is data).

Argument checking covers what models actually get wrong (a missing required key, an unknown key
where the schema forbids extras, a string where a number was declared, a value outside an enum)
without pulling in a JSON-schema library for the core.

Why tools run on a thread of their own: `asyncio.wait_for` can only interrupt a coroutine at an
`await`. A tool that does synchronous work inside `execute` (a catastrophic regex, a big file
walk) would hold the caller's event loop — every other rollout, every gateway request — for as
long as it runs, and its timeout would fire only afterwards. So each environment's calls run on
that environment's own event loop in a daemon thread (`ToolThread`): the caller's loop keeps
running, and the caller gets its timeout observation on time even while the thread is still busy
(the late result is dropped; the thread is stopped when the environment is closed or collected).
Parallel calls of one environment still share one loop and start together in one callback, so
they interleave exactly as they did on the caller's loop.
An environment whose tools must await objects of the caller's loop (a coordinator that runs
sub-agents on the engine) sets `tools_on_caller_loop = True` and must keep its tools non-blocking.

Where a tool fails matters (DESIGN contract 4): a `ToolError`, a crash or a timeout is the agent's
call going wrong and becomes an observation; a `SandboxError` or `VerifierError` out of a tool is the
infrastructure failing under it (the verifier's sandbox cannot start at `submit`), reported with
that boundary so the agent loop ends the episode FAILED instead of charging the agent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import weakref
from collections.abc import Awaitable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from forgerl.errors import SandboxError, ToolError, VerifierError
from forgerl.types import Boundary, Failure, Message, ToolCall, ToolSpec, Trajectory

log = logging.getLogger("forgerl.agent.tools")

T = TypeVar("T")

DEFAULT_TOOL_TIMEOUT_S = 300.0
"""Seconds one tool call may take before the agent reads a timeout observation. Above the longest
sandboxed command a built-in family runs (swe-bugfix's verifier: 120 s), so it only ever fires on a
tool that hangs or computes far too long; lower it where tools are known to be quick."""

INFRA_BOUNDARIES = frozenset({Boundary.SANDBOX, Boundary.VERIFIER})
"""Boundaries whose failure inside a tool is the infrastructure's, not the agent's."""

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
    "null": (type(None),),
}


def _type_ok(value: Any, declared: str | list[str]) -> bool:
    names = [declared] if isinstance(declared, str) else list(declared)
    for name in names:
        if name not in _JSON_TYPES:
            return True  # a type this checker does not know: let the tool decide
        if isinstance(value, bool) and name in ("integer", "number"):
            continue  # JSON booleans are not numbers, although Python's bool is an int
        if name == "integer" and isinstance(value, float) and value.is_integer():
            return True
        if isinstance(value, _JSON_TYPES[name]):
            return True
    return False


def argument_problems(spec: ToolSpec, arguments: dict[str, Any]) -> list[str]:
    """What is wrong with `arguments` for `spec` (empty when they are acceptable)."""
    schema = spec.parameters or {}
    properties: dict[str, Any] = schema.get("properties", {})
    problems = [f"missing required argument {key!r}" for key in schema.get("required", []) if key not in arguments]
    for key, value in arguments.items():
        prop = properties.get(key)
        if prop is None:
            if schema.get("additionalProperties", True) is False:
                problems.append(f"unexpected argument {key!r} (accepted: {', '.join(properties) or 'none'})")
            continue
        if "type" in prop and not _type_ok(value, prop["type"]):
            problems.append(f"argument {key!r} must be of type {prop['type']}, got {type(value).__name__} {value!r}")
        elif "enum" in prop and value not in prop["enum"]:
            problems.append(f"argument {key!r} must be one of {prop['enum']}, got {value!r}")
    return problems


@dataclass
class ToolOutcome:
    """One executed call: the tool message the model will read, and the failure if there was one."""

    message: Message
    failure: Failure | None = None


class ToolExecutor(Protocol):
    """The slice of `envs.base.Environment` this module needs."""

    async def execute(self, call: ToolCall) -> str: ...


class ToolThread:
    """An event loop on a daemon thread: where one environment's tool calls run."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._stopping = False
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            try:
                self.loop.run_until_complete(asyncio.sleep(0))  # let cancelled tasks unwind
            except RuntimeError:  # a second stop() queued meanwhile stopped this run too: nothing left to do
                pass
            self.loop.close()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on this thread's loop; cancelling the caller cancels it there."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def start_together(self, coros: Sequence[Coroutine[Any, Any, T]]) -> list[concurrent.futures.Future[T]]:
        """Start every coroutine as a task on this thread's loop in one callback, in order, so a
        round of parallel calls begins together exactly as `asyncio.gather` on one loop would (one
        submission per call would let the first run — and even finish — before the next is
        submitted, and an environment that counts calls in flight would see a different round
        each time). Cancelling a returned future cancels its task there."""
        futures: list[concurrent.futures.Future[T]] = [concurrent.futures.Future() for _ in coros]

        def start() -> None:
            for coro, future in zip(coros, futures, strict=True):
                if not future.set_running_or_notify_cancel():
                    coro.close()
                    continue
                task = self.loop.create_task(coro)
                task.add_done_callback(lambda t, f=future: _copy_result(t, f))
                future.add_done_callback(lambda f, t=task: f.cancelled() and self.loop.call_soon_threadsafe(t.cancel))

        self.loop.call_soon_threadsafe(start)
        return futures

    def stop(self) -> None:
        """Stop the loop once the work it is doing now returns (a busy tool is not interrupted).
        Idempotent: closing an environment and collecting it both call it."""
        if self._stopping:
            return
        self._stopping = True
        if not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self.loop.stop)
            except RuntimeError:  # closed between the check and the call
                pass


_tool_threads: weakref.WeakKeyDictionary[Any, ToolThread] = weakref.WeakKeyDictionary()
_tool_threads_lock = threading.Lock()


def tool_thread_for(env: object) -> ToolThread | None:
    """The thread `env`'s tools run on (made on first use); None when they run on the caller's
    loop (`tools_on_caller_loop`, or an object that cannot be weakly referenced)."""
    if getattr(env, "tools_on_caller_loop", False):
        return None
    with _tool_threads_lock:
        try:
            worker = _tool_threads.get(env)
        except TypeError:
            return None
        if worker is None:
            worker = ToolThread(name=f"forgerl-tools-{type(env).__name__}")
            try:
                _tool_threads[env] = worker
            except TypeError:
                worker.stop()
                return None
            weakref.finalize(env, worker.stop)
        return worker


def release_tool_thread(env: object) -> None:
    """Stop `env`'s tool thread now (close time) instead of when `env` is collected."""
    with _tool_threads_lock:
        try:
            worker = _tool_threads.pop(env, None)
        except TypeError:
            return
    if worker is not None:
        worker.stop()


async def close_env(env: Any, trajectory: Trajectory | None = None) -> None:
    """Close `env` after its episode and stop its tool thread. Never raises (cancellation aside):
    a cleanup that fails must not take a whole batch of episodes down with it, honest ones
    included. The failure is logged and noted on `trajectory.metadata["cleanup_error"]`."""
    try:
        close = getattr(env, "close", None)
        if close is not None:
            result = close()
            if asyncio.iscoroutine(result):
                await result
    except Exception as exc:  # noqa: BLE001 — RecursionError from a deep tree included
        text = f"closing {type(env).__name__} failed with {type(exc).__name__}: {exc}"
        log.error("%s (the episode's result is kept)", text)
        if trajectory is not None:
            trajectory.metadata["cleanup_error"] = text
    finally:
        release_tool_thread(env)


def _copy_result(task: asyncio.Task[T], future: concurrent.futures.Future[T]) -> None:
    """Hand a finished tool task's outcome to the caller's future (unless the caller gave up)."""
    if future.done():
        return
    if task.cancelled():
        future.cancel()
    elif task.exception() is not None:
        future.set_exception(task.exception())
    else:
        future.set_result(task.result())


def _start_executions(env: ToolExecutor, calls: Sequence[ToolCall]) -> list[Awaitable[str]]:
    """Start `env.execute` for every call of a round: on the environment's tool thread, all in one
    go; or, for `tools_on_caller_loop` environments, as coroutines for the caller's loop."""
    worker = tool_thread_for(env)
    if worker is None:
        return [env.execute(call) for call in calls]
    return [asyncio.wrap_future(f) for f in worker.start_together([env.execute(call) for call in calls])]


def _error(call: ToolCall, boundary: Boundary, text: str, turn: int) -> ToolOutcome:
    message = Message(role="tool", content=f"Error: {text}", tool_call_id=call.id, name=call.name)
    return ToolOutcome(message, Failure(boundary=boundary, message=f"{call.name}: {text}", turn=turn))


def _check_call(call: ToolCall, tools: Sequence[ToolSpec], turn: int) -> ToolOutcome | None:
    """The observation for a call that must not run (unknown tool, bad arguments); None if it may."""
    spec = next((t for t in tools if t.name == call.name), None)
    if spec is None:
        available = ", ".join(t.name for t in tools) or "none"
        return _error(call, Boundary.TOOL, f"unknown tool {call.name!r}. Available tools: {available}.", turn)
    problems = argument_problems(spec, call.arguments)
    if problems:
        return _error(call, Boundary.TOOL, f"invalid arguments for {call.name}: {'; '.join(problems)}.", turn)
    return None


async def _await_outcome(call: ToolCall, execution: Awaitable[str], turn: int, timeout_s: float | None) -> ToolOutcome:
    """Wait for one started call, within `timeout_s`, and turn whatever happened into an outcome."""
    try:
        output = await asyncio.wait_for(execution, timeout_s)
    except ToolError as exc:  # before SandboxError: a bad request to the sandbox is a ToolError too
        return _error(call, Boundary.TOOL, str(exc), turn)
    except (SandboxError, VerifierError) as exc:
        text = (f"tool {call.name} could not run: the {exc.boundary.value} failed ({type(exc).__name__}: {exc}). "
                "This is an infrastructure failure, not a mistake of the call.")
        return _error(call, exc.boundary, text, turn)
    except TimeoutError:
        return _error(call, Boundary.TIMEOUT, f"tool {call.name} timed out after {timeout_s} s", turn)
    except Exception as exc:  # a crashing tool is the tool's failure, not the rollout's
        return _error(call, Boundary.TOOL, f"tool {call.name} failed with {type(exc).__name__}: {exc}", turn)
    return ToolOutcome(Message(role="tool", content=str(output), tool_call_id=call.id, name=call.name))


async def run_tool_call(
    env: ToolExecutor, call: ToolCall, tools: Sequence[ToolSpec], turn: int, timeout_s: float | None = None
) -> ToolOutcome:
    """Validate and run one call; never raises (except cancellation), whatever the tool does.
    `timeout_s` holds even for a tool that blocks (see the module docstring); None waits forever."""
    return (await run_tool_calls(env, [call], tools, turn, timeout_s))[0]


async def run_tool_calls(
    env: ToolExecutor, calls: Sequence[ToolCall], tools: Sequence[ToolSpec], turn: int, timeout_s: float | None = None
) -> list[ToolOutcome]:
    """All calls of one completion concurrently (M2's parallel tool calls), started together;
    results in call order. Never raises (except cancellation)."""
    checked = [_check_call(call, tools, turn) for call in calls]
    runnable = [call for call, refused in zip(calls, checked, strict=True) if refused is None]
    executions = _start_executions(env, runnable)
    done = iter(await asyncio.gather(*(_await_outcome(c, e, turn, timeout_s) for c, e in zip(runnable, executions, strict=True))))
    return [refused if refused is not None else next(done) for refused in checked]
