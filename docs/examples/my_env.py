"""A complete forgerl environment in one file: `shop-total`, "what do N of an item cost?".

The agent looks the unit price up with a tool, multiplies, and submits. Run it:

    forgerl envs validate shop-total --plugin docs/examples/my_env.py
    forgerl eval --env shop-total --plugin docs/examples/my_env.py -n 20
"""

from __future__ import annotations

import random

from forgerl.envs import Environment, Family, Task, register_env, submit_nothing
from forgerl.envs.rewards import Verdict, verify_number
from forgerl.errors import ToolError, VerifierError
from forgerl.types import Message, ToolCall, ToolSpec, Trajectory

FAMILY = "shop-total"
PRICES = {"apple": 3, "bread": 4, "cheese": 9, "milk": 2}

LOOKUP = ToolSpec(name="lookup_price", description="The unit price of an item, in dollars.", parameters={
    "type": "object", "properties": {"item": {"type": "string", "enum": list(PRICES)}}, "required": ["item"]})
SUBMIT = ToolSpec(name="submit_answer", description="Submit the total. Ends the episode.", parameters={
    "type": "object", "properties": {"answer": {"type": "number"}}, "required": ["answer"]})


def generate(seed: int, difficulty: int) -> Task:
    """Difficulty 1: up to 5 items; 2: up to 50 (a larger product to get right)."""
    rng = random.Random(f"{FAMILY}:{difficulty}:{seed}")
    item, count = rng.choice(list(PRICES)), rng.randint(2, 5 if difficulty == 1 else 50)
    return Task(id=f"{FAMILY}-d{difficulty}-{seed}", family=FAMILY, difficulty=difficulty,
                prompt=f"How much do {count} {item} cost, in dollars?", data={"item": item, "count": count},
                answer=PRICES[item] * count, verifier={"type": "exact_number"})


class ShopEnv(Environment):
    family = FAMILY

    def __init__(self, seed: int = 0) -> None:
        self.task: Task | None = None
        self.submitted: float | None = None

    @property
    def done(self) -> bool:
        return self.submitted is not None

    def tools(self) -> list[ToolSpec]:
        return [LOOKUP, SUBMIT]

    def reset(self, task: Task) -> list[Message]:
        self.task, self.submitted = task, None
        return [Message(role="system", content="Use lookup_price, then submit_answer with the total."),
                Message(role="user", content=task.prompt)]

    async def execute(self, call: ToolCall) -> str:
        if call.name == "lookup_price":
            item = call.arguments.get("item")
            if item not in PRICES:  # say what was wrong and what to do
                raise ToolError(f"unknown item {item!r}; items: {', '.join(PRICES)}")
            return str(PRICES[item])
        if call.name == "submit_answer":
            answer = call.arguments.get("answer")
            if isinstance(answer, bool) or not isinstance(answer, int | float) or self.done:
                raise ToolError("submit one number, once")
            self.submitted = answer
            return "Submitted."
        raise ToolError(f"unknown tool {call.name!r}; tools: lookup_price, submit_answer")

    def verify(self, trajectory: Trajectory) -> Verdict:
        if self.task is None:
            raise VerifierError("verify() before reset()")
        return verify_number(self.task.verifier, self.submitted, self.task.answer)

    def gold_solution(self, task: Task) -> list[list[ToolCall]]:
        return [[ToolCall(name="lookup_price", arguments={"item": task.data["item"]})],
                [ToolCall(name="submit_answer", arguments={"answer": task.answer})]]


# noop: doing nothing with this family's own submit tool; `envs validate` requires it to score <= 0
register_env(Family(name=FAMILY, make_env=ShopEnv, sample_task=lambda seed: generate(seed, 1),
                    description="Look up a unit price, multiply, submit.", difficulties=(1, 2), generate=generate,
                    noop=submit_nothing("submit_answer", answer=0)))
