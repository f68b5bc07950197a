"""The arithmetic family: the gold path scores 1.0, no-op and wrong answers 0 (contract 5), and
the calculator refuses everything that is not plain arithmetic."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgerl.envs.arithmetic import TEMPLATES, ArithmeticEnv, calculate, format_number
from forgerl.envs.base import list_families, make_env, run_gold, sample_task
from forgerl.errors import ToolError, VerifierError
from forgerl.types import Boundary, Failure, ToolCall, Trajectory


def execute(env: ArithmeticEnv, name: str, **arguments) -> str:
    return asyncio.run(env.execute(ToolCall(name=name, arguments=arguments)))


@pytest.mark.parametrize("seed", range(40))
def test_gold_path_scores_one(seed):
    task = sample_task("arithmetic", seed)
    trajectory, result = asyncio.run(run_gold(make_env("arithmetic", seed), task))
    assert result.score == 1.0 and trajectory.reward == 1.0
    assert result.breakdown["correct"] == 1.0 and result.evidence["verifier"]["submitted"] == task.answer
    assert isinstance(task.answer, int) and task.answer > 0


def test_gold_path_has_a_parallel_round():
    env = make_env("arithmetic", 0)
    rounds = env.gold_solution(sample_task("arithmetic", 0))
    assert len(rounds[0]) == 2 and rounds[-1][0].name == "submit_answer"


def test_no_op_scores_zero():
    env, task = make_env("arithmetic", 1), sample_task("arithmetic", 1)
    env.reset(task)
    result = env.reward(Trajectory(task_id=task.id))
    assert result.score == 0.0 and result.breakdown["submitted"] == 0.0


def test_wrong_answer_scores_zero_and_counts_process_errors():
    env, task = make_env("arithmetic", 2), sample_task("arithmetic", 2)
    env.reset(task)
    assert "submitted" in execute(env, "submit_answer", answer=task.answer + 1)
    assert env.done
    errors = [Failure(boundary=Boundary.PARSE, message="x"), Failure(boundary=Boundary.TOOL, message="y")]
    result = env.reward(Trajectory(task_id=task.id, errors=errors))
    assert result.score == 0.0
    assert result.breakdown["format_errors"] == 1.0 and result.breakdown["tool_errors"] == 1.0


def test_only_first_submission_counts_and_answer_must_be_a_number():
    env, task = make_env("arithmetic", 4), sample_task("arithmetic", 4)
    env.reset(task)
    with pytest.raises(ToolError, match="number"):
        execute(env, "submit_answer", answer="12")
    with pytest.raises(ToolError, match="number"):
        execute(env, "submit_answer", answer=True)
    assert not env.done
    execute(env, "submit_answer", answer=task.answer)
    with pytest.raises(ToolError, match="already submitted"):
        execute(env, "submit_answer", answer=0)
    assert env.reward(Trajectory()).score == 1.0


def test_reward_before_reset_is_a_verifier_error():
    with pytest.raises(VerifierError):
        ArithmeticEnv().reward(Trajectory())


def test_tasks_are_seeded_and_varied():
    assert sample_task("arithmetic", 7) == sample_task("arithmetic", 7)
    templates = {sample_task("arithmetic", s).data["template"] for s in range(60)}
    assert len(templates) == len(TEMPLATES)
    messages = make_env("arithmetic", 7).reset(sample_task("arithmetic", 7))
    assert [m.role for m in messages] == ["system", "user"]


def test_registry_names_known_families():
    assert "arithmetic" in list_families()
    with pytest.raises(KeyError, match="arithmetic"):
        make_env("no-such-family")


@pytest.mark.parametrize(
    ("expression", "value"),
    [("(12*7)+5", 89), ("7/2", 3.5), ("-3**2", -9), ("2**10", 1024), ("17 // 5", 3), ("17 % 5", 2), (" 1.5*2 ", 3.0)],
)
def test_calculator_evaluates(expression, value):
    assert calculate(expression) == value


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('true')", "only numbers"),
        ("x + 1", "name 'x'"),
        ("(1).__class__", "only numbers"),
        ("[1, 2]", "only numbers"),
        ("True + 1", "only numbers"),
        ("1/0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("9**9**9", "exponent too large"),
        ("10**1000", "exponent too large"),
        ("(10**60)*(10**60)", "exceeds"),
        ("(-8)**0.5", "not a real number"),
        ("1e309", "overflowed"),
        ("3j", "constant 3j"),
        ("'7'", "constant '7'"),
        ("2^8", "write a\\*\\*b"),
        ("1 +", "could not parse"),
        ("1" * 201, "longer than"),
    ],
)
def test_calculator_refuses(expression, message):
    start = time.perf_counter()
    with pytest.raises(ToolError, match=message):
        calculate(expression)
    assert time.perf_counter() - start < 1.0  # refused before computing, not after


def test_calculator_tool_formats_results():
    env = make_env("arithmetic", 0)
    env.reset(sample_task("arithmetic", 0))
    assert execute(env, "calculator", expression="6/3") == "2"
    assert execute(env, "calculator", expression="1/3") == "0.333333333333"
    assert format_number(2.5e20) == "2.5e+20"
    with pytest.raises(ToolError, match="string"):
        execute(env, "calculator", expression=12)


_ops = st.sampled_from(["+", "-", "*", "//", "%"])


@st.composite
def expressions(draw, depth=3):
    if depth == 0 or draw(st.booleans()):
        return str(draw(st.integers(min_value=-999, max_value=999)))
    left, right = draw(expressions(depth=depth - 1)), draw(expressions(depth=depth - 1))
    return f"({left}) {draw(_ops)} ({right})"


@given(expressions())
@settings(max_examples=200, deadline=None)
def test_calculator_agrees_with_python_on_plain_arithmetic(expression):
    try:
        expected = eval(expression)  # noqa: S307 (the strategy only builds integer arithmetic)
    except ZeroDivisionError:
        with pytest.raises(ToolError, match="division by zero"):
            calculate(expression)
        return
    assert calculate(expression) == expected


@given(st.text(max_size=60))
@settings(max_examples=300, deadline=None)
def test_calculator_raises_only_tool_errors(text):
    try:
        value = calculate(text)
    except ToolError:
        return
    assert isinstance(value, int | float) and not isinstance(value, bool)
