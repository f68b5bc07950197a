"""Process features and the scripted grounding expert on hand-built tool-reasoning episodes."""

from __future__ import annotations

import random

import pytest

from forgerl.review.features import (
    PROCESS_FEATURES,
    numbers_in,
    process_features,
    unseen_numbers,
    verifier_reward,
)
from forgerl.review.rm import load_label_data
from forgerl.review.tool_expert import (
    TOOL_EXPERT,
    grounded,
    grounded_fraction,
    label_with_tool_expert,
    preference,
    rubric_scores,
)
from forgerl.store import TrajectoryStore
from forgerl.types import (
    Boundary,
    Failure,
    Message,
    ToolCall,
    Trajectory,
    TrajectoryStatus,
)


def episode(tid: str, expression: str, answer: float, reward: float | None, *, task: str = "t1",
            convert: float | None = None) -> Trajectory:
    """'What is the weight of 6 kiwis and 5 mangos, in g?' with lookups kiwi 5, mango 1."""
    msgs = [Message(role="user", content="What is the weight of 6 kiwis and 5 mangos, in g?"),
            Message(role="assistant", reasoning="I look up both in parallel.", tool_calls=[
                ToolCall(id="a", name="lookup", arguments={"table": "weight", "item": "kiwi"}),
                ToolCall(id="b", name="lookup", arguments={"table": "weight", "item": "mango"})]),
            Message(role="tool", tool_call_id="a", name="lookup", content="5"),
            Message(role="tool", tool_call_id="b", name="lookup", content="1"),
            Message(role="assistant", reasoning=f"Now I compute {expression}.",
                    tool_calls=[ToolCall(id="c", name="calculator", arguments={"expression": expression})]),
            Message(role="tool", tool_call_id="c", name="calculator", content="35")]
    if convert is not None:
        msgs += [Message(role="assistant", reasoning="Convert.", tool_calls=[
                     ToolCall(id="d", name="convert", arguments={"value": convert, "from_unit": "kg", "to_unit": "g"})]),
                 Message(role="tool", tool_call_id="d", name="convert", content="35000")]
    msgs.append(Message(role="assistant", reasoning="Submit.",
                        tool_calls=[ToolCall(id="e", name="submit_answer", arguments={"answer": answer})]))
    return Trajectory(id=tid, task_id=task, group_id=task, messages=msgs, reward=reward)


def test_numbers_in_tool_arguments():
    assert numbers_in({"expression": "6*5+3*1", "x": [2, {"y": 1.5}], "flag": True, "n": None}) == [6, 5, 3, 1, 2, 1.5]
    assert numbers_in("v1.2 and 6-3") == [6, 3]  # a version-like token is not a number after a word char
    assert numbers_in(float("nan")) == []


def test_unseen_numbers_counts_only_invented_arguments():
    good = episode("g", "6*5+5*1", 35000, 1.0, convert=35)
    assert unseen_numbers(good) == ([], 5)  # 6, 5, 5, 1 from the question/lookups; 35 from the calculator
    bad = episode("b", "6*5+3*1", 33000, 0.0, convert=33)
    assert unseen_numbers(bad) == ([3.0, 33.0], 5)  # 3 invented; 33 never came from a tool (it said 35)
    assert grounded(good) and not grounded(bad)
    # the final answer is the deliverable, not a step: an unseen submitted number is not a hallucination
    assert grounded(episode("s", "6*5+5*1", 12345, 0.0))


def test_process_features_shape_and_values():
    bad = episode("b", "6*5+3*1", 33000, 0.0)
    bad.errors.append(Failure(boundary=Boundary.PARSE, message="x"))
    bad.messages[1].reasoning = "leaked <invoke name=\"lookup\">"
    f = dict(zip(PROCESS_FEATURES, process_features(bad), strict=True))
    assert f["llm_calls"] == pytest.approx(0.3) and f["tool_calls"] == pytest.approx(0.4)
    assert f["max_parallel_calls"] == pytest.approx(0.4)
    assert f["parse_errors"] == pytest.approx(1 / 3) and f["tool_errors"] == 0
    assert f["unseen_numbers"] == pytest.approx(1 / 3) and f["seen_number_fraction"] == pytest.approx(0.75)
    assert f["markup_in_text"] == 1.0 and f["verifier_passed"] == 0.0


def test_verifier_reward_survives_a_blend():
    t = episode("x", "6*5+5*1", 35, 1.0)
    t.metadata["reward_model"] = {"verifier_reward": 1.0}
    t.reward = 0.6
    assert verifier_reward(t) == 1.0
    assert dict(zip(PROCESS_FEATURES, process_features(t), strict=True))["verifier_passed"] == 1.0


def test_preference_grounding_first_then_verifier():
    correct = episode("c", "6*5+5*1", 35, 1.0)
    slip = episode("s", "6*5+6*1", 36, 0.0)  # wrong, but every number was seen
    invented = episode("i", "6*5+3*1", 33, 0.0)
    invented2 = episode("j", "6*5+2*1", 32, 0.0)
    assert preference(correct, slip) == "c"
    assert preference(slip, invented) == "s"  # the verifier ties these two
    assert preference(invented, correct) == "c"
    assert preference(invented, invented2) is None
    rng = random.Random(0)
    s = rubric_scores(invented, rng)
    assert s["correctness"] in (1, 2) and s["process"] in (2, 3) and s["communication"] in (3, 4)
    assert grounded_fraction([correct, slip, invented, invented2]) == 0.5


def test_labelling_writes_rubric_and_preferences(tmp_path):
    trajs = [episode("c", "6*5+5*1", 35, 1.0), episode("s", "6*5+6*1", 36, 0.0), episode("i", "6*5+3*1", 33, 0.0),
             episode("f", "6*5+3*1", 33, None)]
    trajs[3].status = TrajectoryStatus.FAILED  # an infra failure is not judged
    with TrajectoryStore(tmp_path / "run") as store:
        store.add_run({"kind": "test"}, run_id="r")
        store.add_trajectories(trajs, "r", step=0)
        assert label_with_tool_expert(store, trajs) == (3, 3)
        data = load_label_data(store)
        assert {lab.expert for lab in store.labels()} == {TOOL_EXPERT}
    assert sorted(data.preferences) == [("c", "i"), ("c", "s"), ("s", "i")]
    assert data.texts["i"].process == process_features(trajs[2])
