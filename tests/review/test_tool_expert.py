"""Process features and the scripted grounding expert on hand-built tool-reasoning episodes."""

from __future__ import annotations

import random

import pytest

from forgerl.review.features import (
    PROCESS_FEATURES,
    numbers_in,
    process_features,
    submitted,
    unseen_numbers,
    verifier_reward,
    well_formed,
)
from forgerl.review.rm import load_label_data
from forgerl.review.tool_expert import (
    TOOL_EXPERT,
    grounded,
    grounded_fraction,
    label_with_tool_expert,
    labellable,
    preference,
    rubric_scores,
    worked,
    worked_fraction,
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


QUESTION = Message(role="user", content="What is the weight of 6 kiwis and 5 mangos, in g?")


def collapsed(tid: str, *, task: str = "t1", turns: int = 3) -> Trajectory:
    """What issue 8's first RM run taught the policy: tool markup that never parses, so no call is
    made and no number is passed (hence none invented), until the turn budget runs out."""
    msgs, errors = [QUESTION], []
    for turn in range(turns):
        msgs += [Message(role="assistant", content='I look up 6 kiwis.</think><invoke name="loo"><parameter name="'),
                 Message(role="tool", content="Error: your last output could not be parsed: unclosed <parameter>")]
        errors.append(Failure(boundary=Boundary.PARSE, message="unclosed <parameter>", turn=turn))
    return Trajectory(id=tid, task_id=task, group_id=task, messages=msgs, reward=0.0, errors=errors,
                      status=TrajectoryStatus.TRUNCATED)


def guessed(tid: str, answer: float, reward: float, *, task: str = "t1") -> Trajectory:
    """Well formed, but the answer is submitted without a single lookup."""
    msgs = [QUESTION, Message(role="assistant", reasoning="Submit.", tool_calls=[
                ToolCall(id="e", name="submit_answer", arguments={"answer": answer})]),
            Message(role="tool", tool_call_id="e", name="submit_answer", content=f"Answer {answer} submitted.")]
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
    assert f["well_formed"] == 0.0 and f["submitted"] == 1.0  # one output did not parse
    good = dict(zip(PROCESS_FEATURES, process_features(episode("g", "6*5+5*1", 35, 1.0)), strict=True))
    assert good["well_formed"] == 1.0 and good["seen_number_fraction"] == 1.0
    # passing no number at all is no evidence of grounding (version 1 gave it the best value, 1.0)
    broken = dict(zip(PROCESS_FEATURES, process_features(collapsed("x")), strict=True))
    assert broken["tool_calls"] == 0 and broken["unseen_numbers"] == 0 and broken["seen_number_fraction"] == 0
    assert broken["well_formed"] == 0 and broken["submitted"] == 0 and broken["parse_errors"] == 1.0


def test_well_formed_needs_every_output_parsed_and_an_ending_by_the_agent():
    good = episode("g", "6*5+5*1", 35, 1.0)
    assert well_formed(good) and submitted(good)
    assert not well_formed(collapsed("x")) and not submitted(collapsed("x"))
    cut = episode("c", "6*5+5*1", 35, 1.0)
    cut.errors.append(Failure(boundary=Boundary.PARSE, message="your last output was cut off at 192 tokens"))
    assert not well_formed(cut)  # recovered afterwards, but one output could not be acted on
    tool_error = episode("t", "6*5+5*1", 35, 1.0)
    tool_error.errors.append(Failure(boundary=Boundary.TOOL, message="unknown item"))
    assert well_formed(tool_error)  # a tool saying no is the environment's answer, not a format error
    out_of_turns = episode("o", "6*5+5*1", 35, 0.0)
    out_of_turns.status = TrajectoryStatus.TRUNCATED
    assert not well_formed(out_of_turns)
    assert well_formed(guessed("q", 35, 1.0)) and submitted(guessed("q", 35, 1.0))


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


def test_an_episode_that_did_not_do_the_task_is_below_everything_that_did():
    """Issue 8: version 1 counted the collapsed episode as grounded (it passed no number at all)."""
    invented = episode("i", "6*5+3*1", 33, 0.0)
    broken, lucky_guess, wrong_guess = collapsed("b"), guessed("q", 35, 1.0), guessed("w", 12, 0.0)
    cut = episode("c", "6*5+5*1", 35, 1.0)  # the right answer, after one output was cut off
    cut.errors.append(Failure(boundary=Boundary.PARSE, message="cut off"))
    for bad in (broken, lucky_guess, wrong_guess, cut):
        assert not worked(bad) and not grounded(bad)
        assert preference(bad, invented) == "i" and preference(invented, bad) == "i"
    assert unseen_numbers(broken) == ([], 0)  # what made version 1 call it grounded
    assert preference(broken, wrong_guess) is None  # both failed the task: no preference between them
    assert preference(broken, lucky_guess) == "q" and preference(cut, broken) == "c"  # then the verifier
    rng = random.Random(0)
    s = rubric_scores(broken, rng)
    assert s["process"] in (1, 2) and s["communication"] in (1, 2) and s["correctness"] in (1, 2)
    assert labellable(broken)  # judged, not skipped: the reward model must see such episodes
    trajs = [episode("g", "6*5+5*1", 35, 1.0), invented, broken, wrong_guess]
    assert grounded_fraction(trajs) == 0.25 and worked_fraction(trajs) == 0.5


def test_labelling_writes_rubric_and_preferences(tmp_path):
    trajs = [episode("c", "6*5+5*1", 35, 1.0), episode("s", "6*5+6*1", 36, 0.0), episode("i", "6*5+3*1", 33, 0.0),
             episode("f", "6*5+3*1", 33, None)]
    trajs[3].status = TrajectoryStatus.FAILED  # an infra failure is not judged
    trajs.append(collapsed("x"))  # a broken episode is: below all three others
    with TrajectoryStore(tmp_path / "run") as store:
        store.add_run({"kind": "test"}, run_id="r")
        store.add_trajectories(trajs, "r", step=0)
        assert label_with_tool_expert(store, trajs) == (4, 6)
        data = load_label_data(store)
        assert {lab.expert for lab in store.labels()} == {TOOL_EXPERT}
    assert sorted(data.preferences) == [("c", "i"), ("c", "s"), ("c", "x"), ("i", "x"), ("s", "i"), ("s", "x")]
    assert data.texts["i"].process == process_features(trajs[2])
