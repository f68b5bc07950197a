"""The reasoning-gym family: the suite's own entries and scorers, gold 1 / no-op 0 at every
difficulty, difficulty = the suite's curriculum level, any generator by name, weighted mixes,
an optional calculator, and plain-text answers scored like submitted ones."""

from __future__ import annotations

import asyncio
import collections

import pytest

pytest.importorskip("reasoning_gym", reason="reasoning-gym not installed (pip install 'forgerl[suites]')")

from forgerl.agent.loop import run_episode  # noqa: E402
from forgerl.chat import get_format  # noqa: E402
from forgerl.engine.base import SamplingParams  # noqa: E402
from forgerl.engine.scripted import ScriptedEngine  # noqa: E402
from forgerl.envs.base import Task, make_env, run_gold, sample_task  # noqa: E402
from forgerl.envs.reasoning_gym import (  # noqa: E402
    DEFAULT_MIX,
    DIFFICULTIES,
    FAMILY,
    Mix,
    MixEntry,
    ReasoningGymEnv,
    generator_config,
    make_task,
    parse_mix,
    register_mix,
    score,
)
from forgerl.errors import ConfigError, ToolError  # noqa: E402
from forgerl.types import Message, ToolCall, Trajectory, TrajectoryStatus  # noqa: E402


def submit(env, answer) -> str:
    return asyncio.run(env.execute(ToolCall(name="submit_answer", arguments={"answer": answer})))


@pytest.mark.parametrize("generator", [e.generator for e in DEFAULT_MIX.entries])
def test_gold_scores_one_and_noops_zero_at_every_difficulty(generator):
    for difficulty in DIFFICULTIES:
        for seed in range(3):
            task = make_task(generator, seed, difficulty)
            _, result = asyncio.run(run_gold(ReasoningGymEnv(), task))
            assert result.score == 1.0, (task.id, result.evidence)
            env = ReasoningGymEnv()
            env.reset(task)
            assert env.reward(Trajectory()).score == 0.0  # nothing submitted
            submit(env, "")
            assert env.reward(Trajectory()).score == 0.0  # an empty answer


def test_the_verdict_is_the_suites_scorer():
    import reasoning_gym

    task = make_task("basic_arithmetic", 4, 2)
    env = ReasoningGymEnv()
    env.reset(task)
    submit(env, "not a number")
    entry = reasoning_gym.create_dataset("basic_arithmetic", seed=task.data["dataset_seed"], size=1,
                                         **generator_config("basic_arithmetic", 2))[0]
    assert entry["question"] == task.prompt and entry["answer"] == task.answer
    assert env.reward(Trajectory()).breakdown["outcome"] == score("basic_arithmetic", "not a number", entry) < 1
    with pytest.raises(ToolError, match="already submitted"):
        submit(env, task.answer)


def test_difficulty_is_the_curriculum_level():
    easy, hard = generator_config("basic_arithmetic", 1), generator_config("basic_arithmetic", 5)
    assert easy["max_terms"] < hard["max_terms"] and easy["max_digits"] < hard["max_digits"]
    assert generator_config("basic_arithmetic", 1, {"max_terms": 3})["max_terms"] == 3
    lengths = [len(make_task("basic_arithmetic", s, d).prompt) for d in (1, 5) for s in range(10)]
    assert sum(lengths[:10]) < sum(lengths[10:])


def test_any_generator_by_name_and_clear_errors():
    task = make_task("propositional_logic", 1, 1)  # its entries have no single gold answer
    assert task.answer is None
    with pytest.raises(Exception, match="no gold path"):
        ReasoningGymEnv().gold_solution(task)
    with pytest.raises(ConfigError, match="unknown reasoning-gym generator"):
        make_task("no_such_generator", 0)
    with pytest.raises(ConfigError, match="difficulty"):
        make_task("chain_sum", 0, 9)
    with pytest.raises(ConfigError, match="tools"):
        make_task("chain_sum", 0, tools=("browser",))


def test_tasks_round_trip_as_json_and_are_deterministic():
    task = make_task("word_sorting", 3, 2)
    again = Task.model_validate_json(task.model_dump_json())
    env = ReasoningGymEnv()
    assert env.reset(again)[-1].content == task.prompt
    assert make_task("word_sorting", 3, 2) == task and make_task("word_sorting", 4, 2).prompt != task.prompt


def test_weighted_mixes_and_registered_mix_families():
    mix = parse_mix("chain_sum:2*3, leg_counting*1, countdown*0")
    assert [(e.generator, e.difficulty, e.weight) for e in mix.entries] == [
        ("chain_sum", 2, 3.0), ("leg_counting", 1, 1.0), ("countdown", 1, 0.0)]
    picks = collections.Counter(mix.pick(seed).generator for seed in range(400))
    assert picks["countdown"] == 0 and 2.2 < picks["chain_sum"] / picks["leg_counting"] < 4.0
    with pytest.raises(ConfigError):
        parse_mix("chain_sum:x")
    with pytest.raises(ConfigError):
        Mix(())
    register_mix("rg-test-mix", Mix((MixEntry("chain_sum", difficulty=2),)))
    task = sample_task("rg-test-mix", 5, difficulty=3)  # family difficulty 3 shifts the entry's 2 up by 2
    assert task.family == "rg-test-mix" and task.difficulty == 4 and task.data["generator"] == "chain_sum"
    _, result = asyncio.run(run_gold(make_env("rg-test-mix"), task))
    assert result.score == 1.0
    assert sample_task(FAMILY, 1).data["generator"] in {e.generator for e in DEFAULT_MIX.entries}


def test_calculator_tool_variant():
    task = make_task("basic_arithmetic", 2, 1, tools=("calculator",))
    env = ReasoningGymEnv()
    env.reset(task)
    assert [t.name for t in env.tools()] == ["calculator", "submit_answer"]
    assert asyncio.run(env.execute(ToolCall(name="calculator", arguments={"expression": "6*7"}))) == "42"
    plain = ReasoningGymEnv()
    plain.reset(make_task("basic_arithmetic", 2, 1))
    with pytest.raises(ToolError, match="unknown tool"):
        asyncio.run(plain.execute(ToolCall(name="calculator", arguments={"expression": "1"})))


def test_a_plain_text_answer_is_scored_through_the_agent_loop(tokenizer):
    fmt = get_format("minimax_m2")
    task = make_task("chain_sum", 1, 1)
    for reply, expected in ((f"The sum is <answer>{task.answer}</answer>", 1.0), ("<answer>-1</answer>", 0.0)):
        body = fmt.render_assistant_body(Message(role="assistant", reasoning="add them", content=reply))
        traj = asyncio.run(run_episode(ScriptedEngine(tokenizer, [body]), fmt, ReasoningGymEnv(), task,
                                       sampling=SamplingParams(max_tokens=200), max_turns=2, max_total_tokens=4000))
        assert traj.status == TrajectoryStatus.COMPLETED and traj.reward == expected
