"""The vocabulary every part of forgerl speaks.

One small module on purpose: chat formats, engines, agents, the store and the trainer all import
these types and nothing else of each other's. A Trajectory holds the *exact* token ids of every
LLM call (contract 1 in DESIGN.md), so training never re-tokenizes text.
"""

from __future__ import annotations

import time
import uuid
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1

Role = Literal["system", "user", "assistant", "tool"]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolCall(_Model):
    """One call the model asked for. `arguments` are already typed through the tool's schema."""

    id: str = Field(default_factory=lambda: new_id("call"))
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Message(_Model):
    """A chat message. `reasoning` is the thinking of an assistant message (M2's <think>)."""

    role: Role
    content: str = ""
    reasoning: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None  # tool name on tool messages

    @model_validator(mode="after")
    def _check_role_fields(self) -> Message:
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"only assistant messages carry tool_calls, got role {self.role!r}")
        if self.reasoning is not None and self.role != "assistant":
            raise ValueError(f"only assistant messages carry reasoning, got role {self.role!r}")
        return self


class ToolSpec(_Model):
    """A tool as the model sees it: a name, a description and a JSON schema of its parameters."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    def to_openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


class Timings(_Model):
    queued_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    total_s: float = 0.0


FinishReason = Literal["stop", "length", "abort", "error"]


class LLMCall(_Model):
    """One LLM completion = one RL action (M2_NOTES §4: one sample per (state, action) pair).

    `completion_ids` are the sampled token ids, exactly; `completion_logprobs[i]` is the behaviour
    policy's logprob of `completion_ids[i]`; `loss_mask[i]` is 1 for tokens the loss may train on.
    """

    prompt_ids: list[int]
    completion_ids: list[int]
    completion_logprobs: list[float]
    loss_mask: list[int]
    policy_version: int
    finish_reason: FinishReason
    cached_prompt_tokens: int = 0
    timings: Timings = Field(default_factory=Timings)
    parse_error: str | None = None

    @model_validator(mode="after")
    def _check_lengths(self) -> LLMCall:
        n = len(self.completion_ids)
        if len(self.completion_logprobs) != n or len(self.loss_mask) != n:
            raise ValueError(
                f"completion_ids ({n}), completion_logprobs ({len(self.completion_logprobs)}) and "
                f"loss_mask ({len(self.loss_mask)}) must have the same length"
            )
        return self


class Boundary(str, Enum):
    """Where a failure happened (contract 4): every failure is attributed to exactly one."""

    ENGINE = "engine"
    PARSE = "parse"
    TOOL = "tool"
    SANDBOX = "sandbox"
    VERIFIER = "verifier"
    TIMEOUT = "timeout"
    AGENT = "agent"


class Failure(_Model):
    boundary: Boundary
    message: str
    turn: int | None = None


class TrajectoryStatus(str, Enum):
    COMPLETED = "completed"  # the agent gave a final answer
    TRUNCATED = "truncated"  # a turn / token / context budget ran out: still valid RL data
    FAILED = "failed"  # an infrastructure failure: kept out of the loss


class Trajectory(_Model):
    """One episode: every LLM call with exact ids, the final messages, the reward and the status."""

    id: str = Field(default_factory=lambda: new_id("traj"))
    task_id: str = ""
    group_id: str | None = None
    agent_id: str = "main"
    chat_format: str = ""
    calls: list[LLMCall] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)
    tools: list[ToolSpec] = Field(default_factory=list)
    reward: float | None = None
    reward_breakdown: dict[str, float] = Field(default_factory=dict)
    status: TrajectoryStatus = TrajectoryStatus.COMPLETED
    failure: Failure | None = None  # the fatal failure, when status == FAILED
    errors: list[Failure] = Field(default_factory=list)  # non-fatal: parse/tool errors the agent saw
    perturbation: dict[str, Any] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: float = Field(default_factory=time.time)
    schema_version: int = SCHEMA_VERSION

    @property
    def num_completion_tokens(self) -> int:
        return sum(len(c.completion_ids) for c in self.calls)
