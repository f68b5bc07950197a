"""The vocabulary every part of forgerl speaks.

One small module on purpose: chat formats, engines, agents, the store and the trainer all import
these types and nothing else of each other's. A Trajectory holds the *exact* token ids of every
LLM call (contract 1 in DESIGN.md), so training never re-tokenizes text.
"""

from __future__ import annotations

import math
import time
import uuid
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 2
"""Version 2 promoted the metadata keys code relies on (family, difficulty, step, end_reason,
perturbations) to typed Trajectory fields; version-1 JSON is moved forward on load (see
`Trajectory._promote_legacy_metadata`)."""

PROMOTED_METADATA_KEYS: dict[str, str] = {
    "family": "family",
    "difficulty": "difficulty",
    "step": "rollout_step",
    "end_reason": "end_reason",
    "perturbations": "perturbations",
}
"""Schema-1 `metadata` key -> the typed field that replaced it. Code must not write these keys into
`metadata` any more: the store refuses a trajectory that still carries one (it would drift)."""

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
    family: str | None = None
    """The environment family of the task (filters and per-family metrics group by it)."""
    difficulty: int | float | None = None
    """The task's difficulty dial (envs: 1 = easiest); the curriculum and metrics group by it."""
    rollout_step: int | None = None
    """The training step the rollout was collected for (the run's step when it was scheduled).
    Not the store's `step` column, which is the step that *consumed* it (later when off-policy)."""
    end_reason: str | None = None
    """Why the episode ended ("final answer", "environment done", a budget, a failed boundary...)."""
    perturbations: dict[str, Any] | None = None
    """The perturbation record of a perturbed episode (forgerl.perturb: version, seed, spec and the
    applied perturbations); `forgerl.perturb.replay` rebuilds the episode from it. None: unperturbed."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Free-form diagnostics (gateway details, cleanup errors, reward-model scores...): nothing that
    code filters or groups on belongs here; that gets a typed field."""
    created_at: float = Field(default_factory=time.time)
    schema_version: int = SCHEMA_VERSION

    @property
    def passed(self) -> bool:
        """The verifier's verdict: an episode that ran (not FAILED) whose outcome is 1.0. Pass rates
        count this, not the shaped reward (which may add format or efficiency terms)."""
        return self.status != TrajectoryStatus.FAILED and self.reward_breakdown.get("outcome") == 1.0

    @model_validator(mode="before")
    @classmethod
    def _promote_legacy_metadata(cls, data: Any) -> Any:
        """Read schema-1 trajectories (stored runs, JSONL exports, fixtures): their structural keys
        lived in `metadata`, and an unused top-level `perturbation` field existed. Moves each into
        its typed field so old run directories open unchanged (the store's payloads are
        append-only and are never rewritten). A value the typed field cannot hold stays in
        `metadata`; a key set both ways with different values is refused rather than guessed."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        version = data.get("schema_version", SCHEMA_VERSION)
        if isinstance(version, int) and not isinstance(version, bool) and version < SCHEMA_VERSION:
            data["schema_version"] = SCHEMA_VERSION  # what it holds once moved forward
        legacy = data.pop("perturbation", None)
        if legacy is not None:
            data["perturbations"] = _merge_promoted("perturbation", data.get("perturbations"), legacy)
        metadata = data.get("metadata")
        if not isinstance(metadata, dict) or not any(k in metadata for k in PROMOTED_METADATA_KEYS):
            return data
        metadata = dict(metadata)
        for key, field in PROMOTED_METADATA_KEYS.items():
            if key in metadata and _fits_promoted(field, metadata[key]):
                data[field] = _merge_promoted(key, data.get(field), metadata.pop(key))
        data["metadata"] = metadata
        return data

    def value_of(self, key: str) -> Any:
        """A typed field by name (or its schema-1 metadata name), else `metadata[key]` (None if
        absent): for code that groups by a key the user names (eval --group-by, rollout metrics)."""
        field = PROMOTED_METADATA_KEYS.get(key, key)
        if field in type(self).model_fields and field != "metadata":
            return getattr(self, field)
        return self.metadata.get(key)

    @property
    def num_completion_tokens(self) -> int:
        return sum(len(c.completion_ids) for c in self.calls)


def _fits_promoted(field: str, value: Any) -> bool:
    """Whether a schema-1 metadata value has the typed field's type (others stay in metadata)."""
    if value is None:
        return True
    if field in ("family", "end_reason"):
        return isinstance(value, str)
    if field == "difficulty":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if field == "rollout_step":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, dict)


def _merge_promoted(name: str, current: Any, legacy: Any) -> Any:
    if current is None or legacy is None or current == legacy:
        return legacy if current is None else current
    raise ValueError(f"{name!r} is set both as a typed field ({current!r}) and in the schema-1 place ({legacy!r}); "
                     "keep only the typed field")


class TrainingSample(_Model):
    """One token sequence ready for the loss, built from the exact recorded token ids.

    Per position t of `input_ids` (the target token, predicted from position t-1): `loss_mask[t]`
    is 1 where the loss applies (a sampled token), `old_logprobs[t]` is the behaviour policy's
    logprob of it and `advantages[t]` its advantage. A sample is one LLM call (M2: one sample per
    (state, action)), or a *chain* of calls of one trajectory where each call's prompt extends the
    previous call's prompt + completion: causal attention makes the chain's logprobs at every
    position equal to the per-call ones, so token-level losses see the same terms at a fraction
    of the compute (`segments` keeps the call boundaries for sequence-level losses).
    """

    input_ids: list[int]
    loss_mask: list[int]
    old_logprobs: list[float]
    advantages: list[float]
    trajectory_id: str
    calls: list[int]  # indices of the trajectory's calls this sample holds
    policy_versions: list[int]

    @model_validator(mode="after")
    def _check_lengths(self) -> TrainingSample:
        n = len(self.input_ids)
        if not (len(self.loss_mask) == len(self.old_logprobs) == len(self.advantages) == n):
            raise ValueError("input_ids, loss_mask, old_logprobs and advantages must have the same length")
        return self

    @property
    def num_tokens(self) -> int:
        return sum(self.loss_mask)


def chain_samples(trajectory: Trajectory, call_advantages: list[float], *, merge: bool = True) -> list[TrainingSample]:
    """Training samples of a trajectory's calls; consecutive calls that extend each other are
    merged into one sample when `merge` (a context-manager rewrite starts a new one)."""
    samples: list[TrainingSample] = []
    current: TrainingSample | None = None
    for i, (call, adv) in enumerate(zip(trajectory.calls, call_advantages)):
        if not call.completion_ids:
            continue
        extends = (current is not None and merge and len(call.prompt_ids) >= len(current.input_ids)
                   and call.prompt_ids[: len(current.input_ids)] == current.input_ids)
        if not extends:
            current = TrainingSample(input_ids=list(call.prompt_ids), loss_mask=[0] * len(call.prompt_ids),
                                     old_logprobs=[0.0] * len(call.prompt_ids), advantages=[0.0] * len(call.prompt_ids),
                                     trajectory_id=trajectory.id, calls=[], policy_versions=[])
            samples.append(current)
        gap = call.prompt_ids[len(current.input_ids):]
        current.input_ids += gap + call.completion_ids
        current.loss_mask += [0] * len(gap) + list(call.loss_mask)
        current.old_logprobs += [0.0] * len(gap) + list(call.completion_logprobs)
        current.advantages += [0.0] * len(gap) + [adv] * len(call.completion_ids)
        current.calls.append(i)
        current.policy_versions.append(call.policy_version)
    return [s for s in samples if s.num_tokens > 0]
