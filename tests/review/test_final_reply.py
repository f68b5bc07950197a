"""What the review pages show as the episode's deliverable: the submitted answer when the episode
ends in a submit tool call, the final reply when it ends in text, the last text otherwise — each
labelled for what it is, and always escaped."""

from __future__ import annotations

import html
import re

import pytest

from forgerl.review.render import trajectory_view
from forgerl.store import TrajectoryStore
from forgerl.types import Message, ToolCall, Trajectory

from .conftest import sign_in
from .test_app import active_content

EVIL = '<script>alert("xss")</script><img src=x onerror=alert(1)>'


def _episode(*turns: Message, end_reason: str | None = None, tid: str = "t1") -> Trajectory:
    """system + user, then `turns`; each tool call gets an observation right after its message."""
    messages = [Message(role="system", content="sys"), Message(role="user", content="do the task")]
    for turn in turns:
        messages.append(turn)
        messages += [Message(role="tool", tool_call_id=c.id, name=c.name, content=f"ok: {c.name}")
                     for c in turn.tool_calls]
    return Trajectory(id=tid, task_id="task", messages=messages, reward=1.0, reward_breakdown={"outcome": 1.0},
                      family="test", end_reason=end_reason)


def _calls(*calls: ToolCall) -> Message:
    return Message(role="assistant", tool_calls=list(calls))


def test_submit_answer_is_the_final_reply_not_an_earlier_text():
    traj = _episode(Message(role="assistant", content="Let me think about the basket first."),
                    _calls(ToolCall(id="a", name="lookup", arguments={"item": "pear"})),
                    Message(role="assistant", content="I submit 42.",
                            tool_calls=[ToolCall(id="s", name="submit_answer", arguments={"answer": 42})]),
                    end_reason="environment done")
    final = trajectory_view(traj).final
    assert final.kind == "submitted"
    assert final.text == "42"  # the submitted answer, not "Let me think about the basket first."
    assert final.tool == "submit_answer"
    assert final.note == "I submit 42."
    assert final.observation == "ok: submit_answer"
    assert final.heading == "Submitted answer"


def test_swe_submit_without_arguments_says_so():
    traj = _episode(_calls(ToolCall(id="e", name="edit_file", arguments={"path": "a.py"})),
                    _calls(ToolCall(id="s", name="submit", arguments={})), end_reason="environment done")
    final = trajectory_view(traj).final
    assert final.kind == "submitted" and final.tool == "submit"
    assert final.text == "(submitted with no arguments: the work itself is what was submitted)"


def test_a_renamed_submit_tool_is_found_by_how_the_episode_ended():
    """Perturbed episodes rename tools (submit_answer -> finalizeResult, or invented words):
    the call that made the environment done is the submission."""
    traj = _episode(_calls(ToolCall(id="a", name="lookup", arguments={"item": "pear"})),
                    _calls(ToolCall(id="s", name="dovakuResult", arguments={"answer": "7 kg", "unit": "kg"})),
                    end_reason="environment done")
    final = trajectory_view(traj).final
    assert final.kind == "submitted" and final.tool == "dovakuResult"
    assert final.text == '{\n  "answer": "7 kg",\n  "unit": "kg"\n}'


def test_submit_found_by_name_when_the_end_reason_is_unknown():
    traj = _episode(_calls(ToolCall(id="s", name="submitAnswer", arguments={"answer": "yes"})))
    assert trajectory_view(traj).final.text == "yes"


def test_a_text_reply_is_the_final_reply():
    traj = _episode(_calls(ToolCall(id="a", name="shell", arguments={"command": "ls"})),
                    Message(role="assistant", content="Done: listed it."), end_reason="final answer")
    final = trajectory_view(traj).final
    assert (final.kind, final.heading, final.text) == ("reply", "Final reply", "Done: listed it.")


def test_an_episode_cut_off_mid_work_shows_the_last_text_labelled_as_such():
    traj = _episode(Message(role="assistant", content="I will look around."),
                    _calls(ToolCall(id="a", name="shell", arguments={"command": "ls"})),
                    _calls(ToolCall(id="b", name="shell", arguments={"command": "pwd"})),
                    end_reason="max_turns=3 reached")
    final = trajectory_view(traj).final
    assert final.kind == "last_text" and final.text == "I will look around."
    assert "no final reply" in final.heading and "message 2" in final.heading


def test_no_text_at_all():
    traj = _episode(_calls(ToolCall(id="a", name="shell", arguments={"command": "ls"})),
                    end_reason="max_turns=1 reached")
    final = trajectory_view(traj).final
    assert final.kind == "none" and final.text is None


@pytest.fixture()
def hostile_run(run_dir):
    traj = _episode(Message(role="assistant", content=EVIL + " earlier text"),
                    Message(role="assistant", content=EVIL + " note",
                            tool_calls=[ToolCall(id="s", name="submit_<b>answer</b>",
                                                 arguments={"answer": EVIL + " answer"})]),
                    end_reason="environment done", tid="hostile_submit")
    with TrajectoryStore(run_dir) as store:
        store.add_trajectory(traj, "demo")
    return run_dir


def test_the_submitted_answer_is_shown_escaped_in_the_app(hostile_run):
    from fastapi.testclient import TestClient

    from forgerl.review.app import create_app

    with TestClient(create_app(hostile_run)) as c:
        assert sign_in(c, "alice").status_code == 303
        page = c.get("/t/hostile_submit").text
        compare = c.get("/compare?a=hostile_submit&b=hostile_submit").status_code  # same id: refused, no 500
    assert compare == 400
    assert active_content(page) == []
    box = re.search(r'<div class="box" id="deliverable">(.*?)</div>\s*<div class="box">', page, re.S)
    assert box, "no deliverable box"
    text = html.unescape(box.group(1))
    assert "Submitted answer" in text and EVIL + " answer" in text
    assert "submit_<b>answer</b>" in text and EVIL + " note" in text
    assert "earlier text" not in text  # not an older message passed off as the reply
    assert "&lt;script&gt;" in box.group(1)
