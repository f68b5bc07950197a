"""Arithmetic word problems: the smallest task family that still needs tools and several turns.

Each problem combines two independent sub-results (so a good agent computes them with parallel
calculator calls), then the whole, then submits. The verifier is exact: reward 1.0 when the
submitted number equals the gold answer, else 0.0. The calculator evaluates a parsed syntax tree
of numbers and + - * / // % ** only: model output is untrusted, so nothing is ever `eval`-ed.
"""

from __future__ import annotations

import ast
import math
import operator
import random
from collections.abc import Callable
from typing import Any

from forgerl.envs.base import Family, Task, register_family, submit_nothing
from forgerl.envs.numeric import NumericAnswerEnv
from forgerl.envs.rewards import Verdict
from forgerl.errors import ToolError
from forgerl.types import Message, ToolCall, ToolSpec

FAMILY = "arithmetic"
MAX_EXPRESSION_CHARS = 200
MAX_RESULT_DIGITS = 100  # results beyond 10**100 are refused: no problem here needs them

SYSTEM_PROMPT = (
    "You are a careful assistant that solves arithmetic word problems. Use the calculator tool for "
    "every computation (independent parts may be computed with parallel calls), then call "
    "submit_answer exactly once with the final number."
)

CALCULATOR = ToolSpec(
    name="calculator",
    description="Evaluate an arithmetic expression with numbers, parentheses and + - * / // % **.",
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "For example (12*7)+5"}},
        "required": ["expression"],
    },
)
SUBMIT_ANSWER = ToolSpec(
    name="submit_answer",
    description="Submit the final numeric answer. Ends the episode; only the first submission counts.",
    parameters={
        "type": "object",
        "properties": {"answer": {"type": "number", "description": "The final answer as a number"}},
        "required": ["answer"],
    },
)

# --- safe evaluation -------------------------------------------------------------------------

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _check_power(base: float, exponent: float) -> None:
    """Refuse a power whose result would be huge *before* computing it (9**9**9 must not hang)."""
    if abs(base) > 1 and exponent > 0 and exponent * math.log10(abs(base)) > MAX_RESULT_DIGITS:
        raise ToolError(f"exponent too large: {base}**{exponent} would exceed 10**{MAX_RESULT_DIGITS}")


def _check_size(value: Any) -> Any:
    if isinstance(value, complex):
        raise ToolError("the result is not a real number (fractional power of a negative number)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("the result overflowed")
    if abs(value) > 10**MAX_RESULT_DIGITS:
        raise ToolError(f"the result exceeds 10**{MAX_RESULT_DIGITS}")
    return value


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _check_size(node.value)  # 1e309 is a float literal for inf
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        try:
            return _check_size(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ToolError("division by zero") from None
        except OverflowError:
            raise ToolError("the result overflowed") from None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
        raise ToolError("'^' is not a power operator here; write a**b")
    found = type(node).__name__
    if isinstance(node, ast.Name):
        found = f"name {node.id!r}"
    elif isinstance(node, ast.Constant):
        found = f"constant {node.value!r}"
    raise ToolError(f"only numbers, parentheses and + - * / // % ** are allowed; found {found}")


def calculate(expression: str) -> int | float:
    """Evaluate `expression` safely; raises ToolError with a message the model can act on."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"could not parse expression {expression!r}: {exc.msg}") from None
    return _evaluate(tree.body)


def format_number(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return format(value, ".12g") if isinstance(value, float) else str(value)


# --- task generation -------------------------------------------------------------------------


def _bakery(rng: random.Random) -> tuple[str, list[str], str]:
    a, b, c, d = (rng.randint(2, 20) for _ in range(4))
    text = (
        f"A baker fills {a} trays with {b} rolls each and {c} baskets with {d} buns each. "
        "How many pieces of bread did the baker make in total?"
    )
    return text, [f"{a}*{b}", f"{c}*{d}"], f"{a}*{b} + {c}*{d}"


def _warehouse(rng: random.Random) -> tuple[str, list[str], str]:
    c, d = rng.randint(2, 15), rng.randint(2, 15)
    a, b = rng.randint(c, 30), rng.randint(d + 1, 30)  # a*b > c*d
    text = (
        f"A warehouse receives {a} crates of {b} bottles and ships out {c} boxes of {d} bottles. "
        "How many bottles are left in the warehouse?"
    )
    return text, [f"{a}*{b}", f"{c}*{d}"], f"{a}*{b} - {c}*{d}"


def _garden(rng: random.Random) -> tuple[str, list[str], str]:
    a, b, c, d = (rng.randint(2, 12) for _ in range(4))
    text = (
        f"A garden has {a} rows of roses and {b} rows of tulips. Every row holds {c} red and {d} "
        "white flowers. How many flowers are in the garden?"
    )
    return text, [f"{a}+{b}", f"{c}+{d}"], f"({a}+{b})*({c}+{d})"


def _stickers(rng: random.Random) -> tuple[str, list[str], str]:
    while True:  # redraw until the share is a whole number
        a, b, c, d = (rng.randint(2, 15) for _ in range(4))
        divisors = [e for e in range(2, 13) if (a * b + c * d) % e == 0]
        if divisors:
            e = rng.choice(divisors)
            break
    text = (
        f"A club buys {a} packs of {b} stickers and {c} packs of {d} stickers, then shares all the "
        f"stickers equally among its {e} members. How many stickers does each member get?"
    )
    return text, [f"{a}*{b}", f"{c}*{d}"], f"({a}*{b} + {c}*{d}) // {e}"


TEMPLATES = (_bakery, _warehouse, _garden, _stickers)


def sample_task(seed: int) -> Task:
    rng = random.Random(seed)
    template = rng.choice(TEMPLATES)
    text, steps, expression = template(rng)
    answer = calculate(expression)
    return Task(
        id=f"{FAMILY}-{seed}",
        family=FAMILY,
        prompt=f"{text} Use the calculator, then submit the final number with submit_answer.",
        data={"template": template.__name__.lstrip("_"), "steps": steps, "expression": expression},
        answer=answer,
        tools=[CALCULATOR.name, SUBMIT_ANSWER.name],
        verifier={"type": "exact_number", "tolerance": 1e-9},
    )


# --- environment -----------------------------------------------------------------------------


class ArithmeticEnv(NumericAnswerEnv):
    family = FAMILY

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self._calculator_calls = 0

    def tools(self) -> list[ToolSpec]:
        return [CALCULATOR, SUBMIT_ANSWER]

    def reset(self, task: Task) -> list[Message]:
        self._start(task)
        self._calculator_calls = 0
        return [Message(role="system", content=SYSTEM_PROMPT), Message(role="user", content=task.prompt)]

    async def execute(self, call: ToolCall) -> str:
        if call.name == "calculator":
            self._calculator_calls += 1
            expression = call.arguments.get("expression")
            if not isinstance(expression, str):
                raise ToolError("calculator needs a string argument 'expression'")
            return format_number(calculate(expression))
        if call.name == "submit_answer":
            return self._submit(call.arguments.get("answer"))
        raise ToolError(f"unknown tool {call.name!r}; available: calculator, submit_answer")

    def describe(self, verdict: Verdict) -> None:
        verdict.parts["calculator_calls"] = float(self._calculator_calls)
        verdict.evidence["expression"] = self.task.data.get("expression")

    def gold_solution(self, task: Task) -> list[list[ToolCall]]:
        steps = [ToolCall(name="calculator", arguments={"expression": s}) for s in task.data["steps"]]
        return [
            steps,
            [ToolCall(name="calculator", arguments={"expression": task.data["expression"]})],
            [ToolCall(name="submit_answer", arguments={"answer": task.answer})],
        ]


register_family(Family(
    name=FAMILY, make_env=ArithmeticEnv, sample_task=sample_task, noop=submit_nothing("submit_answer", answer=""),
    description="Arithmetic word problems: two parallel calculator calls, one combining call, submit.",
))
