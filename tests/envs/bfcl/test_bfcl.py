"""The bfcl family over the real bfcl-eval data: gold paths score 1 and no-ops 0 in every category
(all items in the slow test), train and eval never share an item, the simulated APIs are driven
without eval, and the suite's checkers reject wrong calls with the reason in the evidence."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("bfcl_eval", reason="bfcl-eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")

from forgerl.agent.loop import run_episode  # noqa: E402
from forgerl.chat import get_format  # noqa: E402
from forgerl.engine.base import SamplingParams  # noqa: E402
from forgerl.engine.scripted import ScriptedEngine  # noqa: E402
from forgerl.envs.base import make_env, run_gold  # noqa: E402
from forgerl.envs.bfcl import HELD_OUT_SEED_BASE, data, generate_task, make_task, make_tasks  # noqa: E402
from forgerl.envs.bfcl.env import TURN_DONE, BfclEnv  # noqa: E402
from forgerl.errors import ConfigError, ToolError  # noqa: E402
from forgerl.types import Message, ToolCall, Trajectory, TrajectoryStatus  # noqa: E402


def gold_and_noop(task) -> tuple[float, float]:
    _, result = asyncio.run(run_gold(BfclEnv(), task))
    env = BfclEnv()
    env.reset(task)
    return result.score, env.reward(Trajectory(task_id=task.id)).score


@pytest.mark.parametrize("category", list(data.CATEGORIES))
def test_gold_scores_one_and_noop_zero_on_items_of_every_category(category):
    items = data.load_category(category)[:3]
    for item in items:
        turns = data.answerable_turns(item) if category in data.MULTI_TURN else [None]
        for turn in turns:
            task = make_task(category, item["id"], turn)
            assert gold_and_noop(task) == (1.0, 0.0), task.id


@pytest.mark.slow
def test_every_items_gold_path_scores_one():
    bad = [t.id for t in make_tasks("all", all_turns=True) if gold_and_noop(t) != (1.0, 0.0)]
    assert bad == []


def test_splits_are_disjoint_deterministic_and_seeds_respect_them():
    for category in data.CATEGORIES:
        train = {i["id"] for i in data.items_in(category, "train")}
        held = {i["id"] for i in data.items_in(category, "eval")}
        assert train and held and not train & held
        assert train | held == {i["id"] for i in data.load_category(category)}
        assert 0.1 < len(held) / (len(train) + len(held)) < 0.35  # about 20%
    for seed in range(30):
        assert generate_task(seed, 1 + seed % 5).data["split"] == "train"
        assert generate_task(HELD_OUT_SEED_BASE + seed, 1 + seed % 5).data["split"] == "eval"
    assert generate_task(7, 4) == generate_task(7, 4)


def test_schemas_become_json_schema():
    spec = data.tool_spec({"name": "f", "description": "d", "parameters": {"type": "dict", "properties": {
        "x": {"type": "float"}, "y": {"type": "tuple", "items": {"type": "dict", "properties": {}}},
        "z": {"type": "any"}}, "required": ["x"]}})
    assert spec.parameters["type"] == "object" and spec.parameters["required"] == ["x"]
    props = spec.parameters["properties"]
    assert props["x"] == {"type": "number"} and props["y"]["type"] == "array"
    assert props["y"]["items"]["type"] == "object" and "type" not in props["z"]


def test_ground_truth_calls_are_parsed_as_literals_never_evaluated():
    call = data.parse_call("sort('a.txt')", ["file_name"])
    assert call.name == "sort" and call.arguments == {"file_name": "a.txt"}
    assert data.parse_call("mv(source='a', destination=\"b\")", ["source", "destination"]).arguments == {
        "source": "a", "destination": "b"}
    with pytest.raises(ConfigError):
        data.parse_call("os.system('rm -rf /')", [])
    with pytest.raises(ValueError):
        data.parse_call("f(x=__import__('os'))", ["x"])


def multi_turn_task(turn: int = 1):
    return make_task("multi_turn_base", "multi_turn_base_0", turn)


def test_multi_turn_history_replays_gold_with_real_outputs_and_hides_excluded_functions():
    env = BfclEnv()
    messages = env.reset(multi_turn_task(1))
    names = {spec.name for spec in env.tools()}
    assert {"cd", "mv", "grep", "post_tweet"} <= names and "cp" not in names  # cp is excluded for this item
    assert [m.role for m in messages[:2]] == ["system", "user"] and messages[-1].role == "user"
    assert [c.name for m in messages for c in m.tool_calls] == ["cd", "mkdir", "mv"]
    assert "moved to" in [m.content for m in messages if m.role == "tool"][-1]
    assert [m.content for m in messages if m.role == "assistant"][-1] == TURN_DONE
    assert "grep" in messages[-1].content


def test_wrong_or_bad_calls_fail_with_the_checkers_reason():
    env = BfclEnv()
    env.reset(multi_turn_task(1))
    asyncio.run(env.execute(ToolCall(name="cd", arguments={"folder": "temp"})))
    asyncio.run(env.execute(ToolCall(name="grep", arguments={"file_name": "final_report.pdf", "pattern": "nothing"})))
    result = env.reward(Trajectory())
    assert result.score == 0.0 and result.breakdown["response_ok"] == 0.0
    assert result.evidence["verifier"]["errors"][0]["type"] == "multi_turn:execution_response_mismatch"
    env = BfclEnv()
    env.reset(multi_turn_task(1))
    asyncio.run(env.execute(ToolCall(name="mkdir", arguments={"dir_name": "extra"})))  # a state change gold never made
    for call in env.gold_solution(multi_turn_task(1)):
        asyncio.run(env.execute(call[0]))
    result = env.reward(Trajectory())
    assert result.score == 0.0 and result.breakdown["state_ok"] == 0.0
    with pytest.raises(ToolError, match="unknown tool 'cp'"):
        asyncio.run(env.execute(ToolCall(name="cp", arguments={"source": "a", "destination": "b"})))
    with pytest.raises(ToolError, match="bad arguments for cd"):
        asyncio.run(env.execute(ToolCall(name="cd", arguments={"nope": 1})))


def test_single_turn_wrong_value_fails_the_ast_checker():
    task = make_task("simple_python", "simple_python_0")
    env = BfclEnv()
    env.reset(task)
    asyncio.run(env.execute(ToolCall(name="calculate_triangle_area", arguments={"base": 10, "height": 6})))
    assert env.done
    result = env.reward(Trajectory())
    assert result.score == 0.0 and result.evidence["verifier"]["errors"]


def test_a_model_that_makes_the_gold_calls_passes_through_the_agent_loop(tokenizer):
    fmt = get_format("minimax_m2")
    task = multi_turn_task(1)
    rounds = BfclEnv().gold_solution(task)
    replies = [fmt.render_assistant_body(Message(role="assistant", reasoning="next step", tool_calls=r)) for r in rounds]
    replies.append(fmt.render_assistant_body(Message(role="assistant", content="The search is done.")))
    env = make_env("bfcl")
    traj = asyncio.run(run_episode(ScriptedEngine(tokenizer, replies, max_context=100_000), fmt, env, task,
                                   sampling=SamplingParams(max_tokens=400), max_turns=8, max_total_tokens=100_000))
    assert traj.status == TrajectoryStatus.COMPLETED and traj.reward == 1.0, (traj.failure, traj.metadata)
