"""`tool-reasoning`: multi-step problems whose tool results feed each other — the embedded default's
curriculum.

Each task carries a small database (prices and weights of items, the contents of people's
baskets). Answering needs a chain of tools: `get_basket` tells which items to look up, `lookup`
gives their numbers, `calculator` combines them, `convert` changes the unit, `submit_answer` ends
the episode. Lookups of different items are independent, so a good agent makes them in one
parallel round; the gold path does, and the speed reward (envs/rewards.py) is measured against it.

The difficulty dial (tool calls before the submit, gold path):

    1  one item: its price or weight, maybe times a count or converted     1-2 calls
    2  two items with counts, maybe converted                              3-4 calls
    3  the items of one basket, totalled                                   4-6 calls
    4  two baskets: their total or their difference, converted             6-10 calls
    5  three baskets totalled, converted                                   11-15 calls

The vocabulary is deliberately small and the phrasing fixed (12 items, 10 people, 2 tables, 4
units, one question template per shape, numbers below 10 before combining) so a model of a few
million parameters can learn the tool protocol rather than the language.

`gold_messages` is a scripted solver that plays the gold path with interleaved thinking: before
every round it states the plan and reacts to the previous results (which it reads from the actual
tool outputs), optionally recovering from one injected transient tool error. The training issue
uses it to make supervised data.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from forgerl.envs.arithmetic import calculate, format_number
from forgerl.envs.base import Family, Observation, Solver, Step, Task, register_family, submit_nothing
from forgerl.envs.noise import transient_failure_message
from forgerl.envs.numeric import NumericAnswerEnv
from forgerl.envs.rewards import Verdict
from forgerl.errors import ToolError, VerifierError
from forgerl.types import Message, ToolCall, ToolSpec

FAMILY = "tool-reasoning"
DIFFICULTIES = (1, 2, 3, 4, 5)

ITEMS = ("apple", "pear", "plum", "fig", "lime", "kiwi", "melon", "grape", "lemon", "mango", "onion", "carrot")
PEOPLE = ("ann", "bob", "cal", "dan", "eve", "fay", "gus", "hal", "ivy", "joe")
TABLES = {"price": "dollars", "weight": "kg"}  # table -> the unit its numbers are in
CONVERTED = {"dollars": "cents", "kg": "g"}  # the finer unit a question may ask for
UNITS: dict[str, tuple[str, int]] = {  # unit -> (quantity, size in the quantity's base unit)
    "cents": ("money", 1), "dollars": ("money", 100),
    "g": ("mass", 1), "kg": ("mass", 1000),
    "m": ("length", 1), "km": ("length", 1000),
    "min": ("time", 1), "h": ("time", 60),
}

SYSTEM_PROMPT = (
    "You answer questions about items and baskets with tools. get_basket lists the items in a "
    "person's basket. lookup gives the price (in dollars) or weight (in kg) of one item. calculator "
    "evaluates arithmetic. convert changes units. Make independent calls in parallel. When you know "
    "the answer, call submit_answer once with the number."
)

TOOL_SPECS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            name="get_basket",
            description="List the items in a person's basket.",
            parameters={
                "type": "object",
                "properties": {"person": {"type": "string", "description": "A first name, e.g. ann"}},
                "required": ["person"], "additionalProperties": False,
            },
        ),
        ToolSpec(
            name="lookup",
            description="Look up the price (dollars) or weight (kg) of one item.",
            parameters={
                "type": "object",
                "properties": {
                    "table": {"type": "string", "enum": list(TABLES)},
                    "item": {"type": "string", "description": "An item name, e.g. apple"},
                },
                "required": ["table", "item"], "additionalProperties": False,
            },
        ),
        ToolSpec(
            name="calculator",
            description="Evaluate an arithmetic expression with numbers, parentheses and + - * / // % **.",
            parameters={
                "type": "object",
                "properties": {"expression": {"type": "string", "description": "For example 3*4+2"}},
                "required": ["expression"], "additionalProperties": False,
            },
        ),
        ToolSpec(
            name="convert",
            description="Convert a value between units: dollars/cents, kg/g, km/m, h/min.",
            parameters={
                "type": "object",
                "properties": {
                    "value": {"type": "number"},
                    "from_unit": {"type": "string", "enum": list(UNITS)},
                    "to_unit": {"type": "string", "enum": list(UNITS)},
                },
                "required": ["value", "from_unit", "to_unit"], "additionalProperties": False,
            },
        ),
        ToolSpec(
            name="submit_answer",
            description="Submit the final numeric answer. Ends the episode; only the first submission counts.",
            parameters={
                "type": "object",
                "properties": {"answer": {"type": "number"}},
                "required": ["answer"], "additionalProperties": False,
            },
        ),
    )
}

# --- the tools, as pure functions of the task's database ---------------------------------------


def _text_arg(arguments: dict[str, Any], key: str) -> str:
    value = arguments.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ToolError(f"argument {key!r} must be a non-empty string, got {value!r}")
    return value.strip().lower()


def _number(value: int | float) -> int | float:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def get_basket(db: dict[str, Any], arguments: dict[str, Any]) -> str:
    person = _text_arg(arguments, "person")
    baskets: dict[str, list[str]] = db["basket"]
    if person not in baskets:
        raise ToolError(f"no basket for {person!r}; people with baskets: {', '.join(sorted(baskets))}")
    return ", ".join(baskets[person])


def lookup(db: dict[str, Any], arguments: dict[str, Any]) -> str:
    table, item = _text_arg(arguments, "table"), _text_arg(arguments, "item")
    if table not in TABLES:
        raise ToolError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    values: dict[str, int] = db[table]
    if item not in values:
        raise ToolError(f"no item {item!r} in table {table}; items: {', '.join(sorted(values))}")
    return format_number(values[item])


def convert(value: Any, from_unit: Any, to_unit: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ToolError(f"value must be a finite number, got {value!r}")
    for unit in (from_unit, to_unit):
        if unit not in UNITS:
            raise ToolError(f"unknown unit {unit!r}; units: {', '.join(UNITS)}")
    (q_from, size_from), (q_to, size_to) = UNITS[from_unit], UNITS[to_unit]
    if q_from != q_to:
        raise ToolError(f"cannot convert {q_from} ({from_unit}) to {q_to} ({to_unit})")
    return _number(value * size_from / size_to)


def run_tool(db: dict[str, Any], call: ToolCall) -> str:
    """The observation for a non-submit call; ToolError (with what to do) on a bad call."""
    args = call.arguments
    if call.name == "get_basket":
        return get_basket(db, args)
    if call.name == "lookup":
        return lookup(db, args)
    if call.name == "calculator":
        expression = args.get("expression")
        if not isinstance(expression, str):
            raise ToolError("calculator needs a string argument 'expression'")
        return format_number(calculate(expression))
    if call.name == "convert":
        return format_number(convert(args.get("value"), args.get("from_unit"), args.get("to_unit")))
    raise ToolError(f"unknown tool {call.name!r}; available: {', '.join(TOOL_SPECS)}")


# --- task generation ---------------------------------------------------------------------------


def _plural(item: str) -> str:
    return item + "s"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _question(rng: random.Random, difficulty: int) -> dict[str, Any]:
    """The problem's shape: which table, which items (with counts) or baskets, which unit."""
    table = rng.choice(list(TABLES))
    base = TABLES[table]
    if difficulty == 1:
        shape = rng.choice(["one", "count", "convert"])
        item = rng.choice(ITEMS)
        counts = {item: rng.randint(2, 9) if shape == "count" else 1}
        return {"kind": "items", "table": table, "counts": counts, "unit": CONVERTED[base] if shape == "convert" else base}
    if difficulty == 2:
        a, b = rng.sample(ITEMS, 2)
        unit = rng.choice([base, CONVERTED[base]])
        return {"kind": "items", "table": table, "counts": {a: rng.randint(2, 6), b: rng.randint(2, 6)}, "unit": unit}
    if difficulty == 3:
        return {"kind": "total", "table": table, "people": rng.sample(PEOPLE, 1), "unit": rng.choice([base, CONVERTED[base]])}
    if difficulty == 4:
        kind = rng.choice(["total", "difference"])
        return {"kind": kind, "table": table, "people": rng.sample(PEOPLE, 2), "unit": CONVERTED[base]}
    return {"kind": "total", "table": table, "people": rng.sample(PEOPLE, 3), "unit": CONVERTED[base]}


_BASKET_SIZES = {3: (2, 3), 4: (3, 3), 5: (3, 4)}


def _database(rng: random.Random, question: dict[str, Any], difficulty: int) -> dict[str, Any]:
    """Prices 1-9 dollars and weights 1-5 kg for a handful of items (the needed ones plus
    distractors), and baskets for the question's people plus one distractor person."""
    people = list(question.get("people", []))
    baskets: dict[str, list[str]] = {}
    if people:
        low, high = _BASKET_SIZES[difficulty]
        others = [p for p in PEOPLE if p not in people]
        for person in [*people, rng.choice(others)]:
            baskets[person] = rng.sample(ITEMS, rng.randint(low, high))
    needed = {item for items in baskets.values() for item in items} | set(question.get("counts", {}))
    extra = rng.sample([i for i in ITEMS if i not in needed], k=min(2, len(ITEMS) - len(needed)))
    items = sorted(needed | set(extra), key=ITEMS.index)
    return {
        "price": {item: rng.randint(1, 9) for item in items},
        "weight": {item: rng.randint(1, 5) for item in items},
        "basket": baskets,
    }


def _prompt(question: dict[str, Any]) -> str:
    table, unit = question["table"], question["unit"]
    what = "price" if table == "price" else "weight"
    if question["kind"] == "items":
        parts = [f"one {i}" if n == 1 else f"{n} {_plural(i)}" for i, n in question["counts"].items()]
        return f"What is the {what} of {_join(parts)}, in {unit}?"
    owners = [f"{p}'s" for p in question["people"]]
    if question["kind"] == "difference":
        more = "cost" if table == "price" else "weigh"
        return f"How much more does {owners[0]} basket {more} than {owners[1]} basket, in {unit}?"
    baskets = "basket" if len(owners) == 1 else "baskets"
    return f"What is the total {what} of the items in {_join(owners)} {baskets}, in {unit}?"


def _basket_value(db: dict[str, Any], table: str, person: str) -> int:
    return sum(db[table][item] for item in db["basket"][person])


def _answer(question: dict[str, Any], db: dict[str, Any]) -> int:
    table = question["table"]
    if question["kind"] == "items":
        value = sum(n * db[table][item] for item, n in question["counts"].items())
    else:
        totals = [_basket_value(db, table, p) for p in question["people"]]
        value = totals[0] - totals[1] if question["kind"] == "difference" else sum(totals)
    return convert(value, TABLES[table], question["unit"])  # type: ignore[return-value]


def generate_task(seed: int, difficulty: int) -> Task:
    """A task at `difficulty` (1..5), fully determined by (seed, difficulty)."""
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"tool-reasoning difficulty must be one of {list(DIFFICULTIES)}, got {difficulty}")
    rng = random.Random(f"{FAMILY}:{difficulty}:{seed}")
    while True:  # a difference must be positive: redraw the rare ties and reversals
        question = _question(rng, difficulty)
        db = _database(rng, question, difficulty)
        if question["kind"] != "difference":
            break
        a, b = (_basket_value(db, question["table"], p) for p in question["people"])
        if a != b:
            if a < b:
                question["people"].reverse()
            break
    return Task(
        id=f"{FAMILY}-d{difficulty}-{seed}",
        family=FAMILY,
        prompt=_prompt(question),
        data={"question": question, "db": db},
        answer=_answer(question, db),
        tools=list(TOOL_SPECS),
        verifier={"type": "exact_number", "tolerance": 1e-9},
        difficulty=difficulty,
    )


def sample_task(seed: int) -> Task:
    """A task at a difficulty drawn from the seed (the registry's difficulty-free entry point)."""
    return generate_task(seed, DIFFICULTIES[random.Random(f"{FAMILY}:level:{seed}").randrange(len(DIFFICULTIES))])


# --- the scripted solver (Step, Observation, Solver: envs/base.py) ----------------------------


def _first_number(text: str) -> int | float:
    match = re.search(r"-?\d+(?:\.\d+)?", text)
    if match is None:
        raise VerifierError(f"the solver expected a number in the tool output {text!r}")
    return _number(float(match.group()))


def _items_in(text: str) -> list[str]:
    return [word for word in re.findall(r"[a-z]+", text.lower()) if word in ITEMS]


def _describe(call: ToolCall) -> str:
    args = call.arguments
    if call.name == "lookup":
        return f"the {args['table']} lookup of {args['item']}"
    if call.name == "get_basket":
        return f"the basket of {args['person']}"
    return f"the {call.name} call"


def _with_retries(step: Step, max_retries: int = 3) -> Generator[Step, list[Observation], list[Observation]]:
    """Make `step`'s calls; calls that fail are made again (only those) until they succeed."""
    results: list[Observation | None] = [None] * len(step.calls)
    pending = list(range(len(step.calls)))
    current = step
    for _ in range(max_retries + 1):
        observed = yield current
        for index, observation in zip(pending, observed, strict=True):
            results[index] = observation
        failed = [i for i in pending if results[i] is not None and results[i].error]  # type: ignore[union-attr]
        if not failed:
            return [r for r in results if r is not None]
        pending = failed
        what = _join([_describe(step.calls[i]) for i in failed])
        errors = "; ".join(results[i].text.rstrip(".") for i in failed)  # type: ignore[union-attr]
        others = ", and the other results are fine" if len(failed) < len(step.calls) else ""
        again = "that call" if len(failed) == 1 else "those calls"
        current = Step(
            f"{what[0].upper()}{what[1:]} failed: {errors}. That looks temporary{others}, so I make only {again} again.",
            [ToolCall(name=step.calls[i].name, arguments=dict(step.calls[i].arguments)) for i in failed],
        )
    raise VerifierError(f"the solver's calls kept failing after {max_retries} retries")


@dataclass(frozen=True)
class SolverStyle:
    """How the scripted solver goes about a task. The default is the gold path (every lookup in one
    parallel round, full sentences). SFT data drawn with varied styles (`sample_style`) teaches the
    policy several correct ways to work; a single deterministic script instead yields a
    near-deterministic policy (token entropy ~0.002) whose rollouts of one task all do the same
    thing, so group-normalised advantages are zero and RL has nothing to choose between."""

    max_parallel: int | None = None
    """Lookups per round; None = all at once. A round costs ~55 tokens per lookup, so at a 192-token
    turn budget three or more lookups only fit when split."""
    terse: bool = False
    """Short notes instead of full sentences in the lookup rounds' thinking."""


GOLD_STYLE = SolverStyle()


def sample_style(seed: int) -> SolverStyle:
    """A style drawn from the seed: half the conversations keep the gold style's lookup rounds."""
    rng = random.Random(f"{FAMILY}:style:{seed}")
    return SolverStyle(max_parallel=rng.choice([None, None, 2, 1]), terse=rng.random() < 0.5)


def _lookup_reasoning(style: SolverStyle, notes: list[str], table: str, base: str, chunk: list[str], first: bool) -> str:
    if style.terse:
        return " ".join([*notes, f"Lookup {table} ({base}): {', '.join(chunk)}."])
    if not first:
        return f"Next I look up the {table} of {_join(chunk)}."
    parallel = " These lookups do not depend on each other, so I make them in parallel." if len(chunk) > 1 else ""
    return " ".join([*notes, f"I look up the {table} of {_join(chunk)} in {base}.{parallel}"])


def solve(task: Task, style: SolverStyle = GOLD_STYLE) -> Solver:
    """The gold path as a dialogue: yields Steps, receives the observations of each step's calls.
    Every number it uses comes from an observation, so the thinking reacts to what tools said."""
    question = task.data["question"]
    table, unit = question["table"], question["unit"]
    base = TABLES[table]
    people: list[str] = list(question.get("people", []))
    notes: list[str] = []
    counts: dict[str, int] = dict(question.get("counts", {}))
    groups: list[list[str]] = []  # the items of each basket, in the question's order
    if people:
        owners = _join([f"{p}'s" for p in people])
        noun, how = ("basket", "") if len(people) == 1 else ("baskets", " in each basket, in parallel")
        reasoning = f"I need the {table} of every item in {owners} {noun}. First I get the list of items{how}."
        observed = yield from _with_retries(Step(reasoning, [ToolCall(name="get_basket", arguments={"person": p}) for p in people]))
        for person, observation in zip(people, observed, strict=True):
            items = _items_in(observation.text)
            groups.append(items)
            notes.append(f"{person}'s basket has {_join(items)}.")
    unique = list(dict.fromkeys([*counts, *(item for group in groups for item in group)]))
    size = style.max_parallel or len(unique)
    values: dict[str, int | float] = {}
    for start in range(0, len(unique), size):
        chunk = unique[start:start + size]
        reasoning = _lookup_reasoning(style, notes if start == 0 else [], table, base, chunk, start == 0)
        observed = yield from _with_retries(Step(reasoning, [ToolCall(name="lookup", arguments={"table": table, "item": i}) for i in chunk]))
        values.update({item: _first_number(o.text) for item, o in zip(chunk, observed, strict=True)})
    found = f"The {table} values are {_join([f'{i} {format_number(v)}' for i, v in values.items()])}."
    if groups:
        sums = ["+".join(format_number(values[i]) for i in group) for group in groups]
        if question["kind"] == "difference":
            expression = f"({sums[0]})-({sums[1]})"
        else:
            expression = "+".join(f"({s})" for s in sums) if len(sums) > 1 else sums[0]
    else:
        expression = "+".join(f"{n}*{format_number(values[i])}" if n > 1 else format_number(values[i]) for i, n in counts.items())
    if re.fullmatch(r"-?\d+(\.\d+)?", expression):
        value, lead = _number(float(expression)), f"{found} No arithmetic is needed: the value is {expression} {base}."
    else:
        reasoning = f"{found} Now I compute {expression} with the calculator."
        (result,) = yield from _with_retries(Step(reasoning, [ToolCall(name="calculator", arguments={"expression": expression})]))
        value = _first_number(result.text)
        lead = f"The calculator says {format_number(value)}, so the result is {format_number(value)} {base}."
    if unit != base:
        reasoning = f"{lead} The question asks for {unit}, so I convert {format_number(value)} {base} to {unit}."
        call = ToolCall(name="convert", arguments={"value": value, "from_unit": base, "to_unit": unit})
        (result,) = yield from _with_retries(Step(reasoning, [call]))
        value = _first_number(result.text)
        lead = f"{format_number(value)} {unit} is the answer."
    yield Step(f"{lead} I submit {format_number(value)}.", [ToolCall(name="submit_answer", arguments={"answer": value})])


# --- environment -------------------------------------------------------------------------------


class ToolReasoningEnv(NumericAnswerEnv):
    family = FAMILY

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self._calls: dict[str, int] = {}

    def tools(self) -> list[ToolSpec]:
        names = self.task.tools if self.task is not None and self.task.tools else list(TOOL_SPECS)
        return [TOOL_SPECS[n] for n in names if n in TOOL_SPECS]

    def reset(self, task: Task) -> list[Message]:
        if task.family != self.family or "db" not in task.data or "question" not in task.data:
            raise ValueError(f"task {task.id!r} is not a {self.family} task (family {task.family!r}, data keys "
                             f"{sorted(task.data)}); make it with generate_task or load a {self.family} task set")
        self._start(task)
        self._calls = {}
        return [Message(role="system", content=SYSTEM_PROMPT), Message(role="user", content=task.prompt)]

    def run(self, call: ToolCall) -> str:
        """Synchronous core of `execute` (the scripted solver uses it without an event loop)."""
        if self.task is None:
            raise ToolError("no task: the environment was not reset")
        allowed = [t.name for t in self.tools()]
        if call.name not in allowed:
            raise ToolError(f"unknown tool {call.name!r}; available: {', '.join(allowed)}")
        self._calls[call.name] = self._calls.get(call.name, 0) + 1
        if call.name == "submit_answer":
            return self._submit(call.arguments.get("answer"))
        return run_tool(self.task.data["db"], call)

    async def execute(self, call: ToolCall) -> str:
        return self.run(call)

    def describe(self, verdict: Verdict) -> None:
        verdict.parts.update({f"{name}_calls": float(n) for name, n in sorted(self._calls.items())})
        verdict.evidence["question"] = self.task.prompt

    def gold_messages(self, task: Task, *, inject_error: bool = False, seed: int = 0, varied: bool = False) -> list[Message]:
        """The scripted solver's whole conversation with interleaved thinking (module function);
        `varied` draws the solver's style from `seed` (`sample_style`)."""
        return gold_messages(task, inject_error=inject_error, seed=seed, style=sample_style(seed) if varied else GOLD_STYLE)

    def solver(self, task: Task, *, seed: int = 0, varied: bool = False) -> Solver:
        """The scripted solver as a dialogue (`solve`), for drivers that run its calls elsewhere
        (perturb/gold.py plays it through a perturbed environment)."""
        return solve(task, sample_style(seed) if varied else GOLD_STYLE)

    def gold_solution(self, task: Task, style: SolverStyle = GOLD_STYLE) -> list[list[ToolCall]]:
        rounds: list[list[ToolCall]] = []
        solver = solve(task, style)
        step = next(solver)
        db = task.data["db"]
        while True:
            rounds.append(step.calls)
            if step.calls[-1].name == "submit_answer":
                return rounds
            step = solver.send([Observation(run_tool(db, call)) for call in step.calls])


def transient_error(call: ToolCall) -> str:
    """The message of an injected transient failure (the same text envs/noise.py uses)."""

    return transient_failure_message(call.name)


def gold_messages(task: Task, *, inject_error: bool = False, seed: int = 0, style: SolverStyle = GOLD_STYLE) -> list[Message]:
    """The whole gold conversation with interleaved thinking: system + user, then per round an
    assistant message (reasoning + parallel tool_calls) and the tool messages from really running
    the tools. With `inject_error`, one call (chosen by `seed`) fails once with a transient error
    and the next thinking notices it and makes that call again."""
    env = ToolReasoningEnv()
    messages = env.reset(task)
    rounds = len(env.gold_solution(task, style))
    fail_round = random.Random(f"inject:{task.id}:{seed}").randrange(max(1, rounds - 1)) if inject_error else -1
    solver = solve(task, style)
    step = next(solver)
    for index in range(rounds + 4):  # +retries
        messages.append(Message(role="assistant", reasoning=step.reasoning, tool_calls=step.calls))
        observations: list[Observation] = []
        for position, call in enumerate(step.calls):
            if index == fail_round and position == len(step.calls) - 1:
                observations.append(Observation(transient_error(call), error=True))
            else:
                try:
                    observations.append(Observation(env.run(call)))
                except ToolError as exc:
                    observations.append(Observation(str(exc), error=True))
        for call, obs in zip(step.calls, observations, strict=True):
            content = f"Error: {obs.text}" if obs.error else obs.text
            messages.append(Message(role="tool", content=content, tool_call_id=call.id, name=call.name))
        if env.done:
            return messages
        step = solver.send(observations)
    raise VerifierError(f"the scripted solver did not finish task {task.id}")


register_family(Family(
    name=FAMILY,
    make_env=ToolReasoningEnv,
    sample_task=sample_task,
    description="Chained lookups, baskets, calculator and unit conversion; difficulty 1-5 (1-2 up to 11-15 calls).",
    difficulties=DIFFICULTIES,
    generate=generate_task,
    noop=submit_nothing("submit_answer", answer=""),
))
