"""`reasoning-gym`: the procedural generators of the reasoning-gym package as forgerl tasks.

reasoning-gym (PyPI `reasoning-gym`, ~100 generators: GSM-style symbolic word problems, countdown,
chain sums, logic puzzles, sorting, ...) draws problems from (generator, config, seed) and scores
an answer string with the generator's own scorer. Here one task = one entry of one generator:

- **Any generator by name** with a seed and a difficulty. Difficulty 1..5 maps onto the
  generator's own curriculum (its global level 0..4; reasoning-gym clamps attributes with fewer
  levels), so "harder" means what the suite's authors meant. Generators without a curriculum use
  their default config at every level. Extra config keys override either.
- **Scored by the suite**: the outcome is `score_answer(answer, entry)` in [0, 1] (some scorers give
  partial credit; the eval counts a pass only at 1.0). The entry is regenerated from
  (generator, config, seed) at reset, so a task stays one small JSONL line and the scorer sees
  exactly the entry the suite made. No answer, or a blank one, scores 0 without asking the scorer.
- **With or without tools**: `submit_answer(answer: string)` is always offered (the gold path uses
  it); `tools=("calculator",)` adds the safe calculator of the arithmetic family. Without a
  submission, the final assistant message (its `<answer>...</answer>` part if present) is the answer,
  so a model that just replies is scored too.
- **Mixed curricula** (M2_NOTES §4, mixed domains): `Mix` is a weighted list of
  (generator, difficulty) entries; `Mix.task(seed)` draws one entry by weight, then the task.
  `register_mix(name, mix)` registers it as a family for training and eval; the built-in
  `reasoning-gym` family is such a mix over generators whose entries carry a gold answer.

The package is an optional dependency (`pip install forgerl[suites]`); it is imported on first use,
so listing families does not need it.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from forgerl.envs.arithmetic import CALCULATOR, calculate, format_number
from forgerl.envs.base import Environment, Family, Task, register_family, submit_nothing
from forgerl.envs.rewards import Verdict
from forgerl.errors import ConfigError, ToolError, VerifierError
from forgerl.types import Message, ToolCall, ToolSpec, Trajectory

FAMILY = "reasoning-gym"
DIFFICULTIES = (1, 2, 3, 4, 5)

SYSTEM_PROMPT = (
    "You solve reasoning problems. Think step by step, then give the final answer by calling "
    "submit_answer once with the answer exactly in the format the question asks for."
)
SUBMIT_ANSWER = ToolSpec(
    name="submit_answer",
    description="Submit the final answer as text. Ends the episode; only the first submission counts.",
    parameters={
        "type": "object",
        "properties": {"answer": {"type": "string", "description": "The final answer, in the format asked for"}},
        "required": ["answer"], "additionalProperties": False,
    },
)
OPTIONAL_TOOLS = ("calculator",)


def _suite() -> Any:
    try:
        import reasoning_gym
    except ImportError as exc:  # an optional extra: say how to get it
        raise ConfigError("the reasoning-gym family needs the `reasoning-gym` package: "
                          "pip install 'forgerl[suites]' (or reasoning-gym==0.1.25)") from exc
    return reasoning_gym


def generators() -> list[str]:
    """Every generator name reasoning-gym registers."""
    _suite()
    from reasoning_gym.factory import DATASETS

    return sorted(DATASETS)


def generator_config(generator: str, difficulty: int, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The generator's config at `difficulty` (curriculum level difficulty-1) plus `overrides`, as
    keyword arguments for `create_dataset` (seed and size excluded; values may be the suite's enums)."""
    _suite()
    from reasoning_gym.factory import DATASETS, create_curriculum, has_curriculum

    if generator not in DATASETS:
        close = [name for name in DATASETS if generator.split("_")[0] in name][:8]
        raise ConfigError(f"unknown reasoning-gym generator {generator!r}"
                          + (f"; similar: {', '.join(close)}" if close else "; see reasoning_gym.factory.DATASETS"))
    if difficulty not in DIFFICULTIES:
        raise ConfigError(f"reasoning-gym difficulty must be one of {list(DIFFICULTIES)}, got {difficulty}")
    config: dict[str, Any] = {}
    if has_curriculum(generator):
        curriculum = create_curriculum(generator)
        curriculum.set_global_level(difficulty - 1)
        generated = curriculum.generate_configuration({"seed": 0, "size": 1})
        config = {k: v for k, v in vars(generated).items() if k not in ("seed", "size")}
    config.update(overrides or {})
    return config


@functools.lru_cache(maxsize=256)
def _entry_cached(generator: str, difficulty: int, overrides_json: str, seed: int) -> dict[str, Any]:
    import json

    config = generator_config(generator, difficulty, json.loads(overrides_json))
    return _suite().create_dataset(generator, seed=seed, size=1, **config)[0]


def make_entry(generator: str, difficulty: int, overrides: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The suite's entry ({question, answer, metadata}) for a generator at a difficulty, with config
    overrides (JSON values), drawn with `seed`. Tasks store these four, not the full config, so a
    task stays one JSON line however the suite types its config."""
    import json

    try:
        return _entry_cached(generator, difficulty, json.dumps(dict(overrides), sort_keys=True), seed)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(f"reasoning-gym refused generator {generator!r} at difficulty {difficulty} "
                          f"with overrides {dict(overrides)}: {exc}") from exc


def score(generator: str, answer: str | None, entry: Mapping[str, Any]) -> float:
    """The generator's own scorer; a missing or blank answer is 0 without asking it."""
    if answer is None or not str(answer).strip():
        return 0.0
    value = float(_suite().get_score_answer_fn(generator)(str(answer), dict(entry)))
    return min(1.0, max(0.0, value))


def _seed_for(generator: str, seed: int) -> int:
    """A per-generator dataset seed, so two generators drawn with one seed are unrelated."""
    digest = hashlib.sha256(f"{generator}:{seed}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def make_task(generator: str, seed: int, difficulty: int = 1, *, config: Mapping[str, Any] | None = None,
              tools: Sequence[str] = ()) -> Task:
    """One reasoning-gym task: `generator` at `difficulty` (1..5), entry drawn with `seed`."""
    unknown = [t for t in tools if t not in OPTIONAL_TOOLS]
    if unknown:
        raise ConfigError(f"unknown reasoning-gym tools {unknown}; available: {', '.join(OPTIONAL_TOOLS)}")
    overrides = dict(config or {})
    dataset_seed = _seed_for(generator, seed)
    entry = make_entry(generator, difficulty, overrides, dataset_seed)
    answer = entry.get("answer")
    return Task(
        id=f"{FAMILY}-{generator}-d{difficulty}-{seed}",
        family=FAMILY,
        prompt=str(entry["question"]),
        data={"generator": generator, "overrides": overrides, "dataset_seed": dataset_seed, "category": generator},
        answer=None if answer is None else str(answer),
        tools=[*tools, SUBMIT_ANSWER.name],
        verifier={"type": "reasoning_gym", "generator": generator},
        difficulty=difficulty,
    )


# --- mixed-generator curricula -----------------------------------------------------------------


@dataclass(frozen=True)
class MixEntry:
    generator: str
    weight: float = 1.0
    difficulty: int = 1
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Mix:
    """A weighted mix of (generator, difficulty) entries drawn per seed: one family, many domains.
    `difficulty_shift` raises every entry's difficulty (clamped to 5), so one mix can be stepped
    up over a run (M2's later stages raise difficulty)."""

    entries: tuple[MixEntry, ...]
    tools: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.entries or any(e.weight < 0 for e in self.entries) or sum(e.weight for e in self.entries) <= 0:
            raise ConfigError("a reasoning-gym mix needs at least one entry and non-negative weights with a positive sum")

    def pick(self, seed: int) -> MixEntry:
        rng = random.Random(f"{FAMILY}:mix:{seed}")
        return rng.choices(self.entries, weights=[e.weight for e in self.entries])[0]

    def task(self, seed: int, difficulty_shift: int = 0) -> Task:
        entry = self.pick(seed)
        level = min(max(DIFFICULTIES), entry.difficulty + difficulty_shift)
        return make_task(entry.generator, seed, level, config=entry.config, tools=self.tools)


def parse_mix(spec: str, tools: Sequence[str] = ()) -> Mix:
    """`"gsm_symbolic:2,countdown*3,chain_sum"`: generator[:difficulty][*weight], comma-separated."""
    entries = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        match = re.fullmatch(r"([A-Za-z0-9_]+)(?::(\d+))?(?:\*([0-9.]+))?", part)
        if match is None:
            raise ConfigError(f"bad reasoning-gym mix entry {part!r}; write generator[:difficulty][*weight]")
        name, level, weight = match.groups()
        entries.append(MixEntry(name, float(weight or 1.0), int(level or 1)))
    return Mix(tuple(entries), tuple(tools))


# the built-in mix: generators whose entries carry a gold answer, in a few domains
DEFAULT_MIX = Mix(tuple(MixEntry(g) for g in (
    "basic_arithmetic", "chain_sum", "gsm_symbolic", "leg_counting", "countdown", "word_sorting", "letter_counting",
    "spell_backward",
)))


# --- environment -------------------------------------------------------------------------------


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def final_text_answer(trajectory: Trajectory) -> str | None:
    """The answer of a model that replied instead of submitting: the last assistant message's
    `<answer>` part, or its whole content."""
    for message in reversed(trajectory.messages):
        if message.role == "assistant" and not message.tool_calls:
            found = _ANSWER_TAG.findall(message.content)
            return (found[-1] if found else message.content).strip() or None
    return None


class ReasoningGymEnv(Environment):
    family = FAMILY

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.task: Task | None = None
        self._entry: dict[str, Any] = {}
        self._submitted: str | None = None

    @property
    def done(self) -> bool:
        return self._submitted is not None

    def tools(self) -> list[ToolSpec]:
        names = self.task.tools if self.task is not None else [SUBMIT_ANSWER.name]
        return [spec for spec in (CALCULATOR, SUBMIT_ANSWER) if spec.name in names]

    def reset(self, task: Task) -> list[Message]:
        if "generator" not in task.data:
            raise ConfigError(f"task {task.id!r} is not a reasoning-gym task (no data.generator); make it with make_task")
        data = task.data
        self.task, self._submitted = task, None
        self._entry = make_entry(data["generator"], task.difficulty, data.get("overrides", {}), data["dataset_seed"])
        return [Message(role="system", content=SYSTEM_PROMPT), Message(role="user", content=task.prompt)]

    async def execute(self, call: ToolCall) -> str:
        if self.task is None:
            raise ToolError("no task: the environment was not reset")
        allowed = [t.name for t in self.tools()]
        if call.name not in allowed:
            raise ToolError(f"unknown tool {call.name!r}; available: {', '.join(allowed)}")
        if call.name == "calculator":
            expression = call.arguments.get("expression")
            if not isinstance(expression, str):
                raise ToolError("calculator needs a string argument 'expression'")
            return format_number(calculate(expression))
        if self._submitted is not None:
            raise ToolError("an answer was already submitted; only the first submission counts")
        answer = call.arguments.get("answer")
        if isinstance(answer, bool) or not isinstance(answer, str | int | float):
            raise ToolError(f"answer must be text, got {answer!r}")
        self._submitted = str(answer)
        return "Answer submitted."

    def verify(self, trajectory: Trajectory) -> Verdict:
        if self.task is None:
            raise VerifierError("reward() called before reset(): no task to verify against")
        answer = self._submitted if self._submitted is not None else final_text_answer(trajectory)
        generator = self.task.data["generator"]
        outcome = score(generator, answer, self._entry)
        return Verdict(
            outcome=outcome,
            parts={"correct": float(outcome == 1.0), "submitted": float(self._submitted is not None)},
            evidence={"checked": f"reasoning-gym's {generator} scorer on the answer",
                      "answer": answer, "gold": self._entry.get("answer"), "score": outcome},
        )

    def gold_solution(self, task: Task) -> list[list[ToolCall]]:
        if task.answer is None:
            raise VerifierError(f"reasoning-gym's {task.data.get('generator')} entries have no gold answer "
                                "(their scorer checks validity instead); this task has no gold path")
        return [[ToolCall(name="submit_answer", arguments={"answer": task.answer})]]


def register_mix(name: str, mix: Mix, description: str = "") -> Family:
    """Register `mix` as a task family `name` (train or eval on it by name). The family's difficulty
    d raises every entry's difficulty by d-1. Held-out seeds (the trainer's range from 10,000,000)
    draw other entries of the same generators: procedural tasks have no fixed item list to split."""

    def generate(seed: int, difficulty: int) -> Task:
        task = mix.task(seed, difficulty_shift=difficulty - 1)
        return task.model_copy(update={"family": name, "id": task.id.replace(FAMILY, name, 1)})

    family = Family(
        name=name,
        make_env=_env_for(name),
        sample_task=lambda seed: generate(seed, 1),
        description=description or "reasoning-gym mix: " + ", ".join(
            f"{e.generator}:{e.difficulty}*{e.weight:g}" for e in mix.entries),
        difficulties=DIFFICULTIES,
        generate=generate,
        noop=submit_nothing("submit_answer", answer=""),
    )
    return register_family(family)


@functools.cache
def _env_for(name: str) -> type[ReasoningGymEnv]:
    return ReasoningGymEnv if name == FAMILY else type(f"ReasoningGymEnv_{name}", (ReasoningGymEnv,), {"family": name})


register_mix(FAMILY, DEFAULT_MIX, description=(
    "reasoning-gym generators (default mix of 8; any by name via register_mix / eval --env "
    "reasoning-gym:NAME), scored by the suite; difficulty = curriculum level"))
