"""The environment protocol: tools the agent may call, the task's opening messages, and a verifier.

Kept deliberately small: an environment is per episode (made by `make_env`, then `reset` with one
task), executes tool calls asynchronously (a sandbox backend runs them in a container, so the
interface is async from the start) and scores the finished trajectory. Tools and verifier are part
of the environment, as in Forge (M2_NOTES §4): the agent loop knows nothing about a task family.

Resources: an environment may hold things that must be released (a sandbox container, a
subprocess). `close()` is async and idempotent; whoever made the environment closes it when the
episode is over (`async with make_env(...) as env:` does that). The default is a no-op.

Scoring: a family implements `verify` (the artifact check, returning a `Verdict`); `reward`
composes it with the trajectory's process signals under `reward_weights` (envs/rewards.py). A
verifier crash raises VerifierError, never a silent zero.

Every family registers a task generator and an environment class by name, and ships a gold
solution path (`gold_solution`) so a test can show the gold scores 1.0 and a no-op scores 0
(DESIGN.md contract 5). `run_gold` plays that path without any model.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from forgerl.envs.rewards import RewardResult, RewardWeights, Verdict, compose_reward, run_verifier
from forgerl.errors import ConfigError, ForgerlError, ToolError
from forgerl.plugins import add_registrar, load_plugins, plugin_hint
from forgerl.types import Message, ToolCall, ToolSpec, Trajectory

if TYPE_CHECKING:
    from forgerl.envs.noise import NoiseConfig

__all__ = [
    "Environment", "EnvironmentWrapper", "Family", "NoopScript", "RewardResult", "RewardWeights", "Task", "Verdict",
    "checked_tool", "family_info", "list_families", "make_env", "play_rounds", "register_env", "register_family", "run_gold",
    "sample_task", "submit_nothing", "unregister_family",
]

# Modules that register forgerl's own families when first needed. A user's family does not go
# here: it is a plug-in (forgerl/plugins.py: --plugin, plugins = [...], entry points).
BUILTIN_FAMILY_MODULES = (
    "forgerl.envs.arithmetic", "forgerl.envs.tool_reasoning", "forgerl.envs.long_context", "forgerl.envs.cowork",
    "forgerl.envs.cowork_long", "forgerl.envs.swe",
    "forgerl.envs.reasoning_gym", "forgerl.envs.bfcl", "forgerl.rollout.multiagent", "forgerl.envs.appdev",
    "forgerl.envs.terminal",
    "forgerl.envs.mle",
    "forgerl.envs.swe_go",
    "forgerl.envs.swe_js",
)


@dataclass
class Step:
    """One assistant turn of a scripted solver: what it thinks, then the calls it makes (in parallel)."""

    reasoning: str
    calls: list[ToolCall]


@dataclass
class Observation:
    """A tool's answer to one of a solver's calls: the text, or the error message when the call failed."""

    text: str
    error: bool = False


Solver = Generator[Step, list[Observation], None]
"""A scripted solver as a dialogue: yields Steps, receives the observations of each Step's calls.
A family that has one offers it as `env.solver(task, seed=, varied=)`; drivers decide where the calls
run (tool_reasoning.gold_messages: the plain environment; perturb/gold.py: a perturbed one)."""


class Task(BaseModel):
    """One problem instance, serializable as one JSONL line (envs/tasks.py).

    Every field past `answer` is optional, so a task written before they existed still loads."""

    model_config = ConfigDict(extra="forbid")

    id: str
    family: str
    prompt: str
    data: dict[str, Any] = Field(default_factory=dict)
    """Family-specific problem data (e.g. the small database a tool-reasoning task looks things up in)."""
    answer: Any = None
    """The gold answer the verifier compares against (None where the verifier needs none)."""
    files: dict[str, str] = Field(default_factory=dict)
    """The workspace: relative path -> text, written into the sandbox/workspace at reset."""
    tools: list[str] = Field(default_factory=list)
    """Names of the tools this task offers; empty = all of the family's tools."""
    verifier: dict[str, Any] = Field(default_factory=dict)
    """How the outcome is checked, e.g. {"type": "exact_number", "tolerance": 1e-9}."""
    difficulty: int = Field(1, ge=1)
    """The family's difficulty dial (1 = easiest)."""
    gold: list[list[ToolCall]] | None = None
    """A gold solution path (rounds of tool calls, each round parallel), when stored with the task;
    otherwise the family computes it (`Environment.gold_solution`)."""


class Environment(ABC):
    """Workspace + tools + verifier for one episode.

    Tool failures the agent should see are raised as `forgerl.errors.ToolError` from `execute`;
    the agent loop turns them (and any other exception) into observations.
    """

    family: ClassVar[str]
    reward_weights: RewardWeights = RewardWeights()
    """How `reward` combines outcome and process signals; `make_env(weights=...)` sets it."""
    task: Task | None = None
    """The task of the current episode (set by `reset`)."""
    tools_on_caller_loop: ClassVar[bool] = False
    """False (the default): the agent loop runs `execute` on a thread of its own, so a tool that
    blocks cannot freeze other episodes and its timeout holds (agent/tools.py). True: `execute`
    runs on the caller's event loop because it awaits objects bound to it (an engine serving
    sub-agents); such tools must never block."""

    @property
    @abstractmethod
    def done(self) -> bool:
        """True once the episode is over from the environment's side (e.g. an answer was submitted)."""

    @abstractmethod
    def tools(self) -> list[ToolSpec]:
        """The tools the agent sees, with JSON schemas of their parameters."""

    @abstractmethod
    def reset(self, task: Task) -> list[Message]:
        """Start an episode on `task`; returns the opening messages (system + user)."""

    @abstractmethod
    async def execute(self, call: ToolCall) -> str:
        """Run one tool call and return the observation text; raise ToolError on tool failure."""

    @abstractmethod
    def verify(self, trajectory: Trajectory) -> Verdict:
        """Check the artifact (the submitted answer, the workspace) and say what was checked.
        Raise VerifierError when the check itself cannot run."""

    @abstractmethod
    def gold_solution(self, task: Task) -> list[list[ToolCall]]:
        """A scripted path that solves `task`: rounds of tool calls, each round run in parallel."""

    def gold_calls(self) -> int | None:
        """Sequential LLM calls of the current task's gold path: the speed reward's baseline.
        None (no speed term; recorded as such in the evidence) when the task has no gold path."""
        if self.task is None:
            return None
        if self.task.gold is not None:
            return len(self.task.gold)
        try:
            return len(self.gold_solution(self.task))
        except (ForgerlError, NotImplementedError):
            return None

    def reward(self, trajectory: Trajectory, *, excused_tool_errors: int = 0) -> RewardResult:
        """Score the finished episode: the verifier's outcome plus process signals (envs/rewards.py)."""
        verdict = run_verifier(self.verify, trajectory)
        return compose_reward(verdict, trajectory, self.reward_weights, gold_calls=self.gold_calls(),
                              excused_tool_errors=excused_tool_errors)

    def events(self) -> list[dict[str, Any]]:
        """Environment events worth keeping on the trajectory (injected noise, sandbox restarts)."""
        return []

    async def close(self) -> None:
        """Release what the episode holds (a sandbox, a subprocess). Idempotent; default no-op."""
        return None

    async def __aenter__(self) -> Environment:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class EnvironmentWrapper(Environment):
    """An environment around `inner` that shares its state (task, reward weights, done): wrappers
    such as NoisyEnvironment and perturb's PerturbedEnvironment override only what they change."""

    def __init__(self, inner: Environment) -> None:
        self.inner = inner
        self.family = inner.family  # type: ignore[misc]

    @property
    def task(self) -> Task | None:  # type: ignore[override]
        return self.inner.task

    @property
    def reward_weights(self) -> RewardWeights:  # type: ignore[override]
        return self.inner.reward_weights

    @reward_weights.setter
    def reward_weights(self, weights: RewardWeights) -> None:
        self.inner.reward_weights = weights

    @property
    def done(self) -> bool:
        return self.inner.done

    @property
    def tools_on_caller_loop(self) -> bool:  # type: ignore[override]
        return self.inner.tools_on_caller_loop


NoopScript = Callable[[Task], list[list[ToolCall]]]
"""Rounds of tool calls that do none of the work but end the episode (e.g. submit an empty answer)."""

VariantScripts = Callable[[Task], dict[str, list[list[ToolCall]]]]
"""Named scripts that do part of the work (a seeded broken solution), for `Family.variants`."""


def checked_tool(call: ToolCall, tools: Sequence[ToolSpec]) -> ToolSpec:
    """The spec of the tool `call` names. A ToolError (an observation the agent reads) for an unknown
    tool, listing the available ones, or for arguments the tool's schema does not declare."""
    spec = next((t for t in tools if t.name == call.name), None)
    if spec is None:
        raise ToolError(f"unknown tool {call.name!r}; available: {', '.join(t.name for t in tools)}")
    known = set((spec.parameters or {}).get("properties", {}))
    unexpected = sorted(set(call.arguments) - known)
    if unexpected:
        raise ToolError(f"{call.name} got unexpected arguments {unexpected}; it accepts: {', '.join(sorted(known)) or 'none'}")
    return spec


def submit_nothing(tool: str, **arguments: Any) -> NoopScript:
    """The usual no-op: one call of the family's own submit tool with `arguments` (e.g.
    `submit_nothing("submit_answer", answer="")`, `submit_nothing("submit")`)."""

    def script(task: Task) -> list[list[ToolCall]]:
        return [[ToolCall(name=tool, arguments=dict(arguments))]]

    return script


@dataclass(frozen=True)
class EpisodeLimits:
    """The run's bounds on one episode, handed to a family's episode runner."""

    max_turns: int
    max_total_tokens: int
    tool_timeout_s: float | None


class EpisodeRunner(Protocol):
    """`await runner(engine, chat_format, task, sampling=..., limits=..., group_id=...)` runs one
    episode with the policy on `engine` and returns its trajectories, the main agent's first
    (its reward is the episode's), every one with `group_id`."""

    def __call__(self, engine: Any, chat_format: Any, task: Task, *, sampling: Any, limits: EpisodeLimits,
                 group_id: str | None) -> Awaitable[list[Trajectory]]: ...


@dataclass(frozen=True)
class Family:
    """A task family: how to draw a task and how to build its environment, both from a seed.

    `generate(seed, difficulty)` draws a task at a difficulty in `difficulties`; families without a
    dial leave it None and `sample_task(seed)` is used at difficulty 1.

    `noop` declares what "doing nothing" looks like with this family's own tools (usually its
    submit tool with an empty answer: `submit_nothing(...)`); `envs validate` plays it and requires
    a score <= 0, so a verifier that accepts any submission is caught. Only the family knows its
    submit tool's name, hence a declaration rather than a guess. `lambda task: []` says the empty
    episode is the no-op (a family whose answer is the calls themselves); None: not checked, and
    validation warns.

    `episode_runner` says how the trainer runs one episode of this family when that is more than
    the plain agent loop on `make_env`'s environment (a multi-agent family: a coordinator that
    spawns sub-agents). It is a capability the family declares, so the trainer never checks
    family names; None = the plain agent loop (forgerl/rollout/episode.py).

    `variants` declares seeded partial solutions (e.g. a reference app with one feature broken),
    by name; `envs validate` plays each and requires a score strictly between 0 and 1, so a
    verifier that only ever answers 0 or 1 is caught. None: no partial credit to check.

    `validation_cost`, when set, says why validating this family is expensive (a browser per
    episode): `envs validate` without a family name skips it with that note, naming it validates it."""

    name: str
    make_env: Callable[[int], Environment]
    sample_task: Callable[[int], Task]
    description: str = ""
    difficulties: tuple[int, ...] = (1,)
    generate: Callable[[int, int], Task] | None = None
    noop: NoopScript | None = None
    episode_runner: EpisodeRunner | None = None
    variants: VariantScripts | None = None
    validation_cost: str = ""

    def task(self, seed: int, difficulty: int | None = None) -> Task:
        if difficulty is None:
            return self.sample_task(seed)
        if difficulty not in self.difficulties:
            raise ValueError(f"family {self.name!r} has difficulties {list(self.difficulties)}, got {difficulty}")
        if self.generate is None:
            return self.sample_task(seed)
        return self.generate(seed, difficulty)


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Make `family` available by name to every command, config and worker of this process."""
    if not isinstance(family, Family):
        raise ConfigError(f"register_family takes a forgerl.envs.Family, got {type(family).__name__}")
    _FAMILIES[family.name] = family
    return family


def register_env(family: Family) -> Family:
    """The public name for registering a task family from your own package (a plug-in module or
    an entry point in group `forgerl.envs`; docs/environments.md). Same as `register_family`."""
    return register_family(family)


def unregister_family(name: str) -> None:
    """Forget family `name` (tests that register throw-away families clean up with this)."""
    _FAMILIES.pop(name, None)


def _register_entry_point(obj: object) -> bool:
    """A Family named by a `forgerl.envs` entry point (forgerl/plugins.py)."""
    if not isinstance(obj, Family):
        return False
    register_family(obj)
    return True


add_registrar(_register_entry_point)


def _load_builtins() -> None:
    for module in BUILTIN_FAMILY_MODULES:
        importlib.import_module(module)


def family_info(name: str) -> Family:
    """The registered family `name`; on a miss, plug-ins are loaded once before giving up."""
    _load_builtins()
    if name not in _FAMILIES:
        load_plugins()
    try:
        return _FAMILIES[name]
    except KeyError:
        known = ", ".join(sorted(_FAMILIES))
        raise KeyError(f"unknown task family {name!r}; registered families: {known}; {plugin_hint()}") from None


def make_env(
    name: str, seed: int = 0, *, noise: NoiseConfig | None = None, weights: RewardWeights | None = None
) -> Environment:
    """A fresh environment of family `name`; `noise` wraps it in seeded noise (envs/noise.py),
    `weights` sets how its reward is composed. The caller closes it (`await env.close()`)."""
    env = family_info(name).make_env(seed)
    if weights is not None:
        env.reward_weights = weights
    if noise is not None:
        from forgerl.envs.noise import NoisyEnvironment  # cycle: forgerl.envs.noise imports forgerl.envs.base

        env = NoisyEnvironment(env, noise)
    return env


def sample_task(name: str, seed: int = 0, difficulty: int | None = None) -> Task:
    return family_info(name).task(seed, difficulty)


def list_families() -> list[str]:
    """Every family: forgerl's own and those of loaded plug-ins (entry points, FORGERL_PLUGINS)."""

    _load_builtins()
    load_plugins()
    return sorted(_FAMILIES)


async def run_gold(env: Environment, task: Task) -> tuple[Trajectory, RewardResult]:
    """Play the family's gold path without a model (contract 5): reset, run each round of calls,
    record the messages, then score. A verifier that does not give this 1.0 is broken.
    Uses `task.gold` when the task carries its own path."""
    return await play_rounds(env, task, lambda t: t.gold if t.gold is not None else env.gold_solution(t))


async def play_rounds(env: Environment, task: Task, script: NoopScript, *,
                      refused_ok: bool = False) -> tuple[Trajectory, RewardResult]:
    """Reset `env` on `task`, run each round of `script(task)` (asked after the reset, so a script
    may read the environment's state), record the messages, then score. `refused_ok`: a call the
    environment refuses (a ForgerlError) becomes an error observation instead of ending the play
    (a no-op's empty answer may rightly be refused)."""
    tools = env.tools()
    messages = env.reset(task)
    for round_ in script(task):
        messages.append(Message(role="assistant", tool_calls=round_))
        for call in round_:
            try:
                result = await env.execute(call)
            except ForgerlError as exc:
                if not refused_ok:
                    raise
                result = f"error: {exc}"
            messages.append(Message(role="tool", content=result, tool_call_id=call.id, name=call.name))
        if env.done:
            break
    trajectory = Trajectory(task_id=task.id, messages=messages, tools=tools)
    result = env.reward(trajectory)
    trajectory.reward, trajectory.reward_breakdown = result.score, result.breakdown
    return trajectory, result
