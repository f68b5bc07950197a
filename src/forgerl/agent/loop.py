"""The white-box agent loop: think, call tools, read the results, think again (M2_NOTES §2, §4).

Token-exact by construction (DESIGN.md contracts 1-2): the first prompt is the rendered opening
messages; after that the next prompt is always the previous prompt + the completion ids exactly as
sampled + the rendered tool results. Nothing sampled is ever decoded and re-encoded for the
context; decoding is only for parsing. Only a context-manager rewrite renders history afresh, and
that starts a new root (recorded in `trajectory.metadata["new_roots"]`, and who rewrote what in
`metadata["context_rewrites"]`, so agent/replay.py rebuilds every prompt); a manager that offers
context actions (agent/context.py `ContextActions`) adds its tools, and the policy's calls to them
are acknowledged by the harness and applied after the turn.

A bad rollout is data (contract 4): parse errors, unknown tools, bad arguments and crashing tools
become observations the model reads and entries in `trajectory.errors`; engine failures end the
episode as FAILED, and so does a sandbox or verifier that fails under a tool (the verifier's
sandbox cannot start at `submit`): that is the infrastructure's failure, attributed to its
boundary with no reward, never a zero charged to the agent. Budgets running out end it as TRUNCATED. Whatever happens, the calls recorded
so far stay on the returned trajectory (pass `trajectory=` to keep a handle even on cancellation).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

from forgerl.agent.context import ContextActions, ContextManager, context_tools_of, rewrite_record
from forgerl.agent.recording import llm_call, record_env_events, score_episode
from forgerl.agent.tools import DEFAULT_TOOL_TIMEOUT_S, INFRA_BOUNDARIES, ToolOutcome, argument_problems, run_tool_calls
from forgerl.chat.base import ChatFormat, encode_segments
from forgerl.engine.base import Engine, GenerationResult, SamplingParams, session_key
from forgerl.envs.base import Environment, Task
from forgerl.errors import ConfigError, ContextLengthError, EngineError, ForgerlError, ParseError
from forgerl.types import Boundary, Failure, Message, ToolCall, ToolSpec, Trajectory, TrajectoryStatus

Status = TrajectoryStatus


@dataclass
class _Context:
    """What the model sees next: the exact prompt ids, and the messages they stand for."""

    prompt_ids: list[int]
    messages: list[Message]


async def run_episode(
    engine: Engine,
    chat_format: ChatFormat,
    env: Environment,
    task: Task,
    *,
    sampling: SamplingParams,
    max_turns: int,
    max_total_tokens: int,
    context_manager: ContextManager | None = None,
    tool_timeout_s: float | None = DEFAULT_TOOL_TIMEOUT_S,
    trajectory: Trajectory | None = None,
) -> Trajectory:
    """Run one episode of `task` in `env`; `max_turns` caps LLM calls, `max_total_tokens` caps the
    context (prompt + completion) of any call; `tool_timeout_s` caps each tool call (it holds even
    for a tool that blocks: agent/tools.py). Returns the trajectory, scored unless FAILED."""
    if max_turns < 1 or max_total_tokens < 2:
        raise ConfigError(f"need max_turns >= 1 and max_total_tokens >= 2, got {max_turns}, {max_total_tokens}")
    traj = trajectory if trajectory is not None else Trajectory()
    traj.task_id, traj.chat_format = task.id, chat_format.name
    traj.family = task.family
    traj.metadata.update(new_roots=[], context_rewrites=[])
    try:
        traj.messages = env.reset(task)  # first: a task may restrict the tool set
        traj.metadata["opening_messages"] = len(traj.messages)
        tools = traj.tools = _offered_tools(env, context_manager)
        ctx = _Context(_render_fresh(engine, chat_format, traj.messages, tools), list(traj.messages))
        for turn in range(max_turns):
            params = _params_for_call(sampling, turn, len(ctx.prompt_ids), min(max_total_tokens, engine.max_context))
            if params is None:
                return _finish(traj, env, Status.TRUNCATED, f"context budget reached ({len(ctx.prompt_ids)} tokens)")
            result = await _generate(engine, ctx.prompt_ids, params, session_id=session_key(traj.id, traj.group_id))
            reply, problem = _record_call(traj, engine, chat_format, tools, ctx.prompt_ids, result)
            if problem is None and not reply.tool_calls:
                traj.messages.append(reply)
                return _finish(traj, env, Status.COMPLETED, "final answer")
            outcomes = await _act(env, reply, problem, tools, turn, tool_timeout_s, context_manager)
            observations = [o.message for o in outcomes]
            failures = [o.failure for o in outcomes if o.failure is not None]
            traj.errors.extend(f for f in failures if f.boundary not in INFRA_BOUNDARIES)
            traj.messages.extend([reply, *observations])
            infra = next((f for f in failures if f.boundary in INFRA_BOUNDARIES), None)
            if infra is not None:  # the sandbox or verifier failed under a tool: not the agent's doing
                record_env_events(traj, env)
                return _fail(traj, infra.boundary, infra.message)
            if env.done:
                return _finish(traj, env, Status.COMPLETED, "environment done")
            ctx = _next_context(ctx, reply, observations, result, engine, chat_format, tools, context_manager, traj)
        return _finish(traj, env, Status.TRUNCATED, f"max_turns={max_turns} reached")
    except ContextLengthError as exc:
        return _finish(traj, env, Status.TRUNCATED, f"context budget: {exc}")
    except asyncio.CancelledError:
        record_env_events(traj, env)
        _fail(traj, Boundary.TIMEOUT, "episode cancelled")
        raise
    except Exception as exc:  # engine failures, and any bug: the record so far is kept
        record_env_events(traj, env)
        boundary = exc.boundary if isinstance(exc, ForgerlError) else Boundary.AGENT
        return _fail(traj, boundary, f"{type(exc).__name__}: {exc}")


def _offered_tools(env: Environment, context_manager: ContextManager | None) -> list[ToolSpec]:
    """The environment's tools, then the context manager's (the policy's context actions)."""
    tools, extra = env.tools(), context_tools_of(context_manager)
    clash = {t.name for t in tools} & {t.name for t in extra}
    if clash:
        raise ConfigError(f"the environment already has tool(s) {sorted(clash)}, which the context manager offers too")
    return [*tools, *extra]


def _render_fresh(
    engine: Engine, chat_format: ChatFormat, messages: Sequence[Message], tools: list[ToolSpec]
) -> list[int]:
    """A new root: the whole conversation rendered and encoded, ending in the generation prompt."""
    return encode_segments(engine.tokenizer, chat_format.render(messages, tools, add_generation_prompt=True)).ids


def _params_for_call(sampling: SamplingParams, turn: int, prompt_len: int, context_limit: int) -> SamplingParams | None:
    """The call's sampling params with max_tokens clipped to the room left; None when no room is
    left. A fixed seed is offset by the turn so successive calls do not replay one random stream."""
    room = context_limit - prompt_len
    if room < 1:
        return None
    seed = None if sampling.seed is None else sampling.seed + turn
    return dataclasses.replace(sampling, max_tokens=min(sampling.max_tokens, room), seed=seed)


async def _generate(engine: Engine, prompt_ids: list[int], params: SamplingParams, session_id: str) -> GenerationResult:
    """One engine call; whatever goes wrong in it is the engine's failure (Boundary.ENGINE)."""
    start = time.perf_counter()
    try:
        result = await engine.generate(list(prompt_ids), params, session_id=session_id)
    except EngineError:
        raise
    except Exception as exc:
        raise EngineError(f"engine.generate raised {type(exc).__name__}: {exc}") from exc
    if result.finish_reason in ("abort", "error"):
        raise EngineError(f"the engine ended the call with finish_reason={result.finish_reason!r}")
    if len(result.logprobs) != len(result.completion_ids):
        raise EngineError(f"engine returned {len(result.completion_ids)} ids but {len(result.logprobs)} logprobs")
    if not result.timings.total_s:
        result.timings = result.timings.model_copy(update={"total_s": time.perf_counter() - start})
    return result


def _record_call(
    traj: Trajectory, engine: Engine, chat_format: ChatFormat, tools: list[ToolSpec], prompt_ids: list[int],
    result: GenerationResult,
) -> tuple[Message, str | None]:
    """Append the LLMCall (ids and logprobs verbatim) and parse the completion. Returns the
    assistant message and, when the completion cannot be acted on, the problem to tell the model."""
    text = engine.tokenizer.decode(result.completion_ids, skip_special_tokens=False)
    problem = parse_error = None
    try:
        reply = chat_format.parse(text, tools).to_message()
    except ParseError as exc:
        parse_error = problem = f"your last output could not be parsed: {exc}"
        reply = Message(role="assistant", content=text.removesuffix(chat_format.end_of_message))
    if result.finish_reason == "length":
        problem = (
            f"your last output was cut off at {len(result.completion_ids)} tokens before it ended, "
            "so none of its tool calls were run. Write shorter outputs."
        )
    traj.calls.append(llm_call(prompt_ids, result, parse_error=parse_error))
    return reply, problem


async def _act(
    env: Environment, reply: Message, problem: str | None, tools: list[ToolSpec], turn: int, timeout_s: float | None,
    context_manager: ContextManager | None = None,
) -> list[ToolOutcome]:
    """The observations for a reply: an error message when it could not be acted on, else the
    results of its tool calls, run concurrently — context actions answered by the harness, the
    rest by the environment — in call order."""
    if problem is not None:
        message = Message(role="tool", content=f"Error: {problem}")
        return [ToolOutcome(message, Failure(boundary=Boundary.PARSE, message=problem, turn=turn))]
    actions = context_manager if isinstance(context_manager, ContextActions) else None
    ours = {id(c) for c in reply.tool_calls if actions is not None and actions.owns(c)}
    env_calls = [c for c in reply.tool_calls if id(c) not in ours]
    done = iter(await run_tool_calls(env, env_calls, tools, turn, timeout_s) if env_calls else [])
    return [_context_action(actions, c, tools, turn) if actions is not None and id(c) in ours else next(done)
            for c in reply.tool_calls]


def _context_action(actions: ContextActions, call: ToolCall, tools: list[ToolSpec], turn: int) -> ToolOutcome:
    """A call to a context tool: checked against its schema like any call, then requested."""
    spec = next(t for t in tools if t.name == call.name)
    problems = argument_problems(spec, call.arguments)
    if problems:
        text = f"invalid arguments for {call.name}: {'; '.join(problems)}."
        return ToolOutcome(Message(role="tool", content=f"Error: {text}", tool_call_id=call.id, name=call.name),
                           Failure(boundary=Boundary.TOOL, message=f"{call.name}: {text}", turn=turn))
    return ToolOutcome(Message(role="tool", content=actions.request(call), tool_call_id=call.id, name=call.name))


def _next_context(
    ctx: _Context, reply: Message, observations: list[Message], result: GenerationResult, engine: Engine,
    chat_format: ChatFormat, tools: list[ToolSpec], context_manager: ContextManager | None, traj: Trajectory,
) -> _Context:
    """Append-only: previous prompt + sampled ids + rendered observations (and the end marker,
    as context, when the completion was cut). A context-manager rewrite starts a new root."""
    closed = result.finish_reason == "stop"
    continuation = chat_format.render_continuation(observations, tools, completion_closed=closed)
    prompt_ids = [*ctx.prompt_ids, *result.completion_ids, *encode_segments(engine.tokenizer, continuation).ids]
    messages = [*ctx.messages, reply, *observations]
    rewritten = context_manager.maybe_rewrite(messages, len(prompt_ids)) if context_manager else None
    if rewritten is None:
        return _Context(prompt_ids, messages)
    traj.metadata["new_roots"].append(len(traj.calls))
    traj.metadata["context_rewrites"].append(
        rewrite_record(context_manager, call=len(traj.calls), message=len(traj.messages), rewritten=rewritten))
    return _Context(_render_fresh(engine, chat_format, rewritten, tools), list(rewritten))


def _finish(traj: Trajectory, env: Environment, status: TrajectoryStatus, reason: str) -> Trajectory:
    """Set the status and score the episode (agent/recording.py, shared with the gateway); a
    verifier crash makes it FAILED (Boundary.VERIFIER)."""
    traj.status = status
    traj.end_reason = reason
    failure = score_episode(traj, env)
    if failure is not None:
        return _fail(traj, failure.boundary, failure.message)
    return traj


def _fail(traj: Trajectory, boundary: Boundary, message: str) -> Trajectory:
    """An infrastructure failure: kept out of the loss, so no reward (not a fake zero)."""
    traj.status, traj.reward, traj.reward_breakdown = Status.FAILED, None, {}
    traj.failure = Failure(boundary=boundary, message=message, turn=len(traj.calls))
    traj.end_reason = f"failed at the {boundary.value} boundary"
    return traj
