"""Environment noise: seeded tool failures, latency, truncated and oddly formatted tool responses.

M2 found that what generalizes to new scaffolds is perturbing the whole operational space, tool
responses included (M2_NOTES §5). `NoisyEnvironment` wraps any environment (so noise is an option
of every family: `make_env(name, seed, noise=NoiseConfig(...))`) and injects:

- transient failures: the call raises ToolError with a message saying it was temporary; the same
  call made again right after is never failed, so a retry always succeeds;
- latency: an `asyncio.sleep` before the call (parallel calls overlap, sequential ones add up);
- truncated responses: a long output is cut, with a visible "[truncated]" marker;
- oddly formatted responses: the same text wrapped differently ("result: 4", JSON, a tag).

Every decision is a pure function of (seed, tool, arguments, how many times that exact call was
made before), so the same episode gets the same noise whatever order concurrent calls run in.
Every injected event is recorded: `env.events()` lists them, and `reward()` adds them to
`RewardResult.evidence["noise"]` (the agent loop already copies the evidence into
`trajectory.metadata["reward_evidence"]`). Injected failures are excused from the tool-error
penalty: the agent did nothing wrong.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from forgerl.envs.base import Environment, EnvironmentWrapper, RewardResult, Task
from forgerl.envs.rewards import Verdict
from forgerl.errors import ToolError
from forgerl.types import Message, ToolCall, ToolSpec, Trajectory

TRUNCATION_MARKER = " ...[truncated]"

_FORMATS: dict[str, Callable[[str], str]] = {
    "prefixed": lambda text: f"result: {text}",
    "padded": lambda text: f"\n  {text}  \n",
    "json": lambda text: json.dumps({"result": text}),
    "tagged": lambda text: f"<output>{text}</output>",
    "annotated": lambda text: f"{text} (ok)",
}


def transient_failure_message(tool: str) -> str:
    return f"{tool} is temporarily unavailable (transient failure). Make the same call again."


class NoiseConfig(BaseModel):
    """What noise to inject and how often. Rates are per tool call, in [0, 1]."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    """Seeds every decision; the same seed gives the same noise for the same calls."""
    failure_rate: float = Field(0.0, ge=0, le=1)
    """Probability that a call fails with a transient ToolError (a retry of it always succeeds)."""
    latency_rate: float = Field(0.0, ge=0, le=1)
    """Probability that a call is delayed by up to `max_latency_s`."""
    max_latency_s: float = Field(0.05, ge=0)
    """Upper bound of an injected delay in seconds (uniform in [0, max])."""
    truncate_rate: float = Field(0.0, ge=0, le=1)
    """Probability that an output longer than `truncate_chars` is cut to that length."""
    truncate_chars: int = Field(40, ge=1)
    """Where outputs are cut; shorter outputs are never truncated."""
    reformat_rate: float = Field(0.0, ge=0, le=1)
    """Probability that an output is wrapped in an unusual format (the value itself is kept)."""
    exempt_tools: list[str] = Field(default_factory=lambda: ["submit_answer"])
    """Tools never failed or altered: by default the final submission, whose loss would end nothing."""

    @model_validator(mode="after")
    def _reject_no_op_latency(self) -> NoiseConfig:
        if self.latency_rate > 0 and self.max_latency_s == 0:
            raise ValueError("latency_rate > 0 with max_latency_s = 0 injects nothing: set max_latency_s > 0")
        return self

    @classmethod
    def mild(cls, seed: int = 0) -> NoiseConfig:
        """A little of everything: what rollouts for training use by default when noise is on."""
        return cls(seed=seed, failure_rate=0.1, latency_rate=0.2, max_latency_s=0.02, truncate_rate=0.1,
                   reformat_rate=0.1)


def _canonical(value: Any) -> Any:
    """JSON-stable arguments: 13.0 and 13 are the same call (chat formats may type either way)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def call_key(name: str, arguments: dict[str, Any]) -> str:
    return f"{name}|{json.dumps(_canonical(arguments), sort_keys=True, default=str)}"


class NoisyEnvironment(EnvironmentWrapper):
    """Any environment, with seeded noise on its tool calls (see the module docstring)."""

    def __init__(self, inner: Environment, config: NoiseConfig) -> None:
        super().__init__(inner)
        self.config = config
        self._events: list[dict[str, Any]] = []
        self._occurrences: dict[str, int] = {}
        self._failed_last: set[str] = set()

    def tools(self) -> list[ToolSpec]:
        return self.inner.tools()

    def reset(self, task: Task) -> list[Message]:
        self._events, self._occurrences, self._failed_last = [], {}, set()
        return self.inner.reset(task)

    def verify(self, trajectory: Trajectory) -> Verdict:
        return self.inner.verify(trajectory)

    def gold_solution(self, task: Task) -> list[list[ToolCall]]:
        return self.inner.gold_solution(task)

    def gold_calls(self) -> int | None:
        return self.inner.gold_calls()

    async def close(self) -> None:
        await self.inner.close()

    def events(self) -> list[dict[str, Any]]:
        return [*self._events, *self.inner.events()]

    def reward(self, trajectory: Trajectory, *, excused_tool_errors: int = 0) -> RewardResult:
        injected = sum(1 for e in self._events if e["kind"] == "failure")
        result = self.inner.reward(trajectory, excused_tool_errors=excused_tool_errors + injected)
        result.evidence["noise"] = {"config": self.config.model_dump(), "events": list(self._events)}
        return result

    # --- the noise ---
    def _record(self, kind: str, call: ToolCall, occurrence: int, **detail: Any) -> None:
        self._events.append({"kind": kind, "tool": call.name, "arguments": _canonical(call.arguments),
                             "occurrence": occurrence, **detail})

    async def execute(self, call: ToolCall) -> str:
        cfg = self.config
        if call.name in cfg.exempt_tools:
            return await self.inner.execute(call)
        key = call_key(call.name, call.arguments)
        occurrence = self._occurrences.get(key, 0)
        self._occurrences[key] = occurrence + 1
        rng = random.Random(f"{cfg.seed}|{key}|{occurrence}")
        delay_draw, delay, fail_draw = rng.random(), rng.uniform(0, cfg.max_latency_s), rng.random()
        cut_draw, format_draw, style = rng.random(), rng.random(), rng.choice(sorted(_FORMATS))
        if delay_draw < cfg.latency_rate:
            self._record("latency", call, occurrence, seconds=round(delay, 6))
            await asyncio.sleep(delay)
        retried_after_failure = key in self._failed_last
        self._failed_last.discard(key)
        if fail_draw < cfg.failure_rate and not retried_after_failure:
            self._failed_last.add(key)
            self._record("failure", call, occurrence, message=transient_failure_message(call.name))
            raise ToolError(transient_failure_message(call.name))
        output = await self.inner.execute(call)
        if len(output) > cfg.truncate_chars and cut_draw < cfg.truncate_rate:
            self._record("truncate", call, occurrence, kept_chars=cfg.truncate_chars, original_chars=len(output))
            return output[: cfg.truncate_chars] + TRUNCATION_MARKER
        if format_draw < cfg.reformat_rate:
            self._record("reformat", call, occurrence, style=style)
            return _FORMATS[style](output)
        return output


class GoldReplayWithRetries:
    """A scripted policy for tests and demos: plays `rounds` (a gold path) one round per LLM call,
    and when calls of the last round failed by injected noise (read from `env.events()`), makes
    just those calls again before moving on. Use it as a ScriptedEngine reply: it ignores the
    prompt and returns the rendered assistant body (`render(message) -> str`)."""

    def __init__(self, env: Environment, rounds: Sequence[list[ToolCall]], render: Callable[[Message], str]) -> None:
        self.env = env
        self.pending = [list(r) for r in rounds]
        self.render = render
        self.last: list[ToolCall] = []
        self.seen_failures = 0
        self.retries = 0

    def __call__(self, prompt: str) -> str:
        failures = [e for e in self.env.events() if e["kind"] == "failure"]
        failed = {call_key(e["tool"], e["arguments"]) for e in failures[self.seen_failures:]}
        self.seen_failures = len(failures)
        retry = [c for c in self.last if call_key(c.name, c.arguments) in failed]
        if retry:
            self.retries += 1
            calls, thought = retry, "A call failed with a temporary error, so I make it again."
        elif self.pending:
            calls, thought = self.pending.pop(0), "I make the next calls of my plan."
        else:
            calls, thought = [], "I have nothing left to call."
        self.last = calls
        fresh = [ToolCall(name=c.name, arguments=dict(c.arguments)) for c in calls]
        return self.render(Message(role="assistant", reasoning=thought, tool_calls=fresh,
                                   content="" if calls else "Done."))
