"""docs/examples/my_env.py (the environment guide's example) works as the guide says: it registers,
validates (gold 1, no-ops 0 at both difficulties), refuses bad calls, and runs through the agent
loop and `forgerl eval`."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

from forgerl.errors import ToolError
from forgerl.types import ToolCall

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "my_env.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("my_env_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_is_short_and_validates(example):
    from forgerl.cli.envs import validate_families

    assert len(EXAMPLE.read_text().splitlines()) < 100
    rows = validate_families(["shop-total"], per_difficulty=10)
    assert [(r.difficulty, r.tasks, r.ok) for r in rows] == [(1, 10, True), (2, 10, True)], [r.problems for r in rows]


def test_example_refuses_bad_calls(example):
    env = example.ShopEnv()
    env.reset(example.generate(0, 1))
    with pytest.raises(ToolError, match="items: apple"):
        asyncio.run(env.execute(ToolCall(name="lookup_price", arguments={"item": "car"})))


def test_example_runs_under_forgerl_eval(example, tokenizer, tmp_path):
    from rich.console import Console

    from forgerl.chat import get_format
    from forgerl.engine.scripted import ScriptedEngine
    from forgerl.eval.run import run_eval
    from forgerl.types import Message

    fmt = get_format("minimax_m2")
    lookup = ToolCall(name="lookup_price", arguments={"item": "milk"})
    reply = fmt.render_assistant_body(Message(role="assistant", reasoning="look it up", tool_calls=[lookup]))
    engine = ScriptedEngine(tokenizer, [reply], cycle=True)
    report = run_eval("shop-total", "scripted", 4, max_turns=2, engine=engine, out_dir=tmp_path, console=Console(width=200))
    assert report.overall.episodes == 4 and report.overall.passed == 0  # it never submits


# --- docs/examples/verifier_honesty.py: each attack passes its naive verifier, none passes the honest one

HONESTY = Path(__file__).resolve().parents[2] / "docs" / "examples" / "verifier_honesty.py"


@pytest.fixture(scope="module")
def honesty():
    spec = importlib.util.spec_from_file_location("verifier_honesty_example", HONESTY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("attack", ["exit_code", "stdout", "planted_file"])
def test_each_attack_fools_its_naive_verifier_but_not_the_honest_one(honesty, attack):
    workspace = honesty.ATTACKS[attack]
    assert asyncio.run(honesty.NAIVE[attack](workspace)) is True, f"the {attack} attack should fool the naive verifier"
    assert asyncio.run(honesty.honest(workspace)) is False


def test_the_honest_verifier_passes_a_real_solution(honesty):
    assert asyncio.run(honesty.honest(honesty.CORRECT)) is True
    for naive in honesty.NAIVE.values():
        assert asyncio.run(naive(honesty.CORRECT)) is True


def test_the_example_family_declares_its_noop(example):
    from forgerl.envs.base import family_info

    noop = family_info("shop-total").noop
    assert noop is not None and noop(example.generate(0, 1))[0][0].name == "submit_answer"
