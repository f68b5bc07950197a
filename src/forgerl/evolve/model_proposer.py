"""A model as the proposer: shown the base config, the space, the history and the doctor's findings,
it answers with a JSON proposal.

The model runs through forgerl's own agent loop (agent/loop.py run_episode) on a one-turn
environment (`ProposalEnvironment`), so each proposal is a token-exact trajectory like any rollout,
recorded in the evolve directory's store (`proposer/`) and trainable; its reward is 1 when the answer
parsed into valid proposals, 0 otherwise. The engine is any forgerl engine: a server behind an
OpenAI-compatible completions endpoint (`forgerl serve`, vLLM; opened as in
rollout/appdev_verifier.py `open_verifier_engine`), the built-in one, or a scripted one in tests.

The answer is parsed strictly: the reply's content must be exactly one JSON object
`{"proposals": [{"config": {...}, "scaffold": {...}, "reason": "..."}]}`, every key known, every
setting inside the declared space. Anything else is a `Rejection` naming what was wrong; the search
logs it and asks again, and stops after `max_rejections` in a row.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forgerl.agent.loop import run_episode
from forgerl.chat import get_format
from forgerl.engine.base import Engine, SamplingParams
from forgerl.envs.base import Environment, Task
from forgerl.envs.rewards import Verdict
from forgerl.errors import ToolError
from forgerl.evolve.propose import Batch, Proposal, Rejection, SearchState
from forgerl.evolve.space import Candidate, ScaffoldChoice, SearchSpace, lookup
from forgerl.types import Message, ToolCall, ToolSpec, Trajectory, TrajectoryStatus

FAMILY = "evolve-proposer"
SYSTEM = ("You tune reinforcement-learning experiments. Propose settings that you expect to raise the objective on "
          "the validation split. Answer with one JSON object only, no other text:\n"
          '{"proposals": [{"config": {"<dotted key>": <value>}, "scaffold": {"<dimension>": <value>}, "reason": "<why>"}]}\n'
          "Use only keys and values listed in the search space. A setting not named stays at the base value.")


class ModelSettings(BaseModel):
    """`[model]`: the proposer model's endpoint and sampling."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = None
    """A completions server (`forgerl serve`, vLLM); None: the built-in engine loads `model` here."""
    model: str = "default"
    """The model (remote: names the tokenizer to encode with, which must be the server's)."""
    chat_format: str = "minimax_m2"
    max_context: int = Field(4096, ge=512)
    max_tokens: int = Field(512, ge=16)
    temperature: float = Field(0.0, ge=0)
    max_candidates: int = Field(2, ge=1)
    """Proposals accepted from one answer (more is a rejection)."""
    max_rejections: int = Field(3, ge=1)
    """Malformed answers in a row before the search stops."""


class ProposalError(ValueError):
    """The model's answer is not a valid proposal (what was wrong is the message)."""


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    config: dict[str, Any] = Field(default_factory=dict)
    scaffold: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    proposals: list[_Item]


def parse_proposals(text: str, space: SearchSpace, max_candidates: int) -> list[tuple[Candidate, str]]:
    """(candidate, reason) per proposal in `text`; ProposalError saying what is wrong otherwise."""
    stripped = text.strip()
    if not stripped.startswith("{") or not stripped.endswith("}"):
        raise ProposalError(f"the answer must be exactly one JSON object, got {_clip(stripped)!r}")
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ProposalError(f"the answer is not valid JSON: {exc.msg} at char {exc.pos}") from None
    try:
        answer = _Answer.model_validate(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        raise ProposalError(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}") from None
    if not 1 <= len(answer.proposals) <= max_candidates:
        raise ProposalError(f"give 1 to {max_candidates} proposals, got {len(answer.proposals)}")
    out = []
    for i, item in enumerate(answer.proposals):
        try:
            candidate = Candidate(config=item.config, scaffold=ScaffoldChoice(**item.scaffold))
            space.check(candidate)
        except (ValidationError, ValueError) as exc:
            detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise ProposalError(f"proposals[{i}]: {detail}") from None
        out.append((candidate, item.reason))
    return out


def _clip(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[:n] + "..."


class ProposalEnvironment(Environment):
    """One turn, no tools: the opening messages describe the search; the verdict says whether the
    answer parsed (the proposer's trainable reward)."""

    family = FAMILY

    def __init__(self, prompt: str, space: SearchSpace, max_candidates: int) -> None:
        self.prompt, self.space, self.max_candidates = prompt, space, max_candidates

    @property
    def done(self) -> bool:
        return False

    def tools(self) -> list[ToolSpec]:
        return []

    def reset(self, task: Task) -> list[Message]:
        self.task = task
        return [Message(role="system", content=SYSTEM), Message(role="user", content=task.prompt)]

    async def execute(self, call: ToolCall) -> str:
        raise ToolError("this episode has no tools: answer with the JSON proposal")

    def verify(self, trajectory: Trajectory) -> Verdict:
        try:
            parse_proposals(final_text(trajectory), self.space, self.max_candidates)
        except ProposalError as exc:
            return Verdict(outcome=0.0, evidence={"rejected": str(exc)})
        return Verdict(outcome=1.0, evidence={"parsed": True})

    def gold_solution(self, task: Task) -> list[list[ToolCall]]:
        raise NotImplementedError("a proposal has no gold path")


def final_text(trajectory: Trajectory) -> str:
    last = trajectory.messages[-1] if trajectory.messages else None
    return last.content if last is not None and last.role == "assistant" else ""


def render_prompt(state: SearchState) -> str:
    """The search so far, compactly: the base's values of the searched keys, the space, the objective,
    every measured proposal and the latest doctor findings."""
    base = {k: lookup(state.base_config, k) for k in state.space.knobs}
    space = {"config": {k: v for k, v in state.space.knob_values().items()}, "scaffold": state.space.scaffold}
    rows = [f"- {o.proposal.candidate.label() or 'base'}: {state.objective.metric} "
            f"{o.value(state.objective):.3f} (n={o.result.measurement.n}, {o.proposal.steps} steps) -> {o.decision}"
            for o in [state.incumbent, *state.history][-12:]]
    findings = [f"- {f.code} ({f.severity}): {f.title}; suggested: {f.suggestion} {json.dumps(f.config_change)}"
                for o in state.history[-3:] for f in o.findings]
    return "\n".join([
        f"Objective: {state.objective.direction} {state.objective.metric} on the validation split.",
        f"Base values of the searchable keys: {json.dumps(base, default=str)}",
        f"Search space: {json.dumps(space, default=str)}",
        f"Incumbent: {state.incumbent.proposal.candidate.label() or 'base'}",
        "History:", *rows, "Doctor findings:", *(findings or ["- none"]),
        "Your JSON proposal:"])


class ModelProposer:
    name = "model"

    def __init__(self, engine: Engine, settings: ModelSettings | None = None, *, store_dir: Path | None = None,
                 steps: int | None = None, tasks: int | None = None) -> None:
        self.engine, self.settings, self.store_dir = engine, settings or ModelSettings(), store_dir
        self.steps, self.tasks = steps, tasks
        self.rejected_in_a_row = 0
        self.trajectories: list[Trajectory] = []

    def propose(self, state: SearchState) -> Batch:
        s = self.settings
        prompt = render_prompt(state)
        env = ProposalEnvironment(prompt, state.space, s.max_candidates)
        task = Task(id=f"evolve-proposal-{len(self.trajectories)}", family=FAMILY, prompt=prompt)
        trajectory = asyncio.run(run_episode(
            self.engine, get_format(s.chat_format), env, task,
            sampling=SamplingParams(max_tokens=s.max_tokens, temperature=s.temperature, seed=len(self.trajectories)),
            max_turns=1, max_total_tokens=min(s.max_context, self.engine.max_context)))
        self._record(trajectory)
        steps = state.budget.steps_per_run if self.steps is None else self.steps
        tasks = state.objective.validation_tasks if self.tasks is None else self.tasks
        try:
            if trajectory.status == TrajectoryStatus.FAILED:
                raise ProposalError(f"the proposer's episode failed: {trajectory.end_reason}")
            parsed = parse_proposals(final_text(trajectory), state.space, s.max_candidates)
        except ProposalError as exc:
            self.rejected_in_a_row += 1
            done = self.rejected_in_a_row >= s.max_rejections
            return Batch(rejections=[Rejection("model", str(exc), final_text(trajectory))], done=done)
        fresh = [(c, why) for c, why in parsed if c.key() not in state.seen()]
        rejections = [Rejection("model", f"already measured: {c.label() or 'base'}") for c, _ in parsed
                      if c.key() in state.seen()]
        self.rejected_in_a_row = 0 if fresh else self.rejected_in_a_row + 1
        return Batch([Proposal(c, steps, tasks, "model", why) for c, why in fresh], rejections,
                     done=self.rejected_in_a_row >= s.max_rejections)

    def _record(self, trajectory: Trajectory) -> None:
        self.trajectories.append(trajectory)
        if self.store_dir is None:
            return
        from forgerl.store import TrajectoryStore  # heavy: sqlite store, only when recording

        self.store_dir.mkdir(parents=True, exist_ok=True)
        with TrajectoryStore(self.store_dir) as store:
            runs = [r for r in store.runs() if r.config.get("kind") == "evolve-proposer"]
            run_id = runs[-1].id if runs else store.add_run({"kind": "evolve-proposer", **self.settings.model_dump()})
            store.add_trajectories([trajectory], run_id)


def open_model_engine(settings: ModelSettings) -> Engine:
    """The proposer model's engine: a client of the server at `url`, or the built-in engine loading `model`."""
    from forgerl.envs.appdev.verifier_config import VerifierModelConfig  # heavy: appdev config
    from forgerl.rollout.appdev_verifier import open_verifier_engine  # heavy: httpx or torch

    return open_verifier_engine(VerifierModelConfig(kind="remote" if settings.url else "builtin", url=settings.url,
                                                    model=settings.model, chat_format=settings.chat_format,
                                                    max_context=settings.max_context, max_tokens=settings.max_tokens))
