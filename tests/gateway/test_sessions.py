"""Session reconciliation on plain data (no HTTP): which earlier call a prompt extends."""

from __future__ import annotations

from forgerl.engine.base import GenerationResult
from forgerl.gateway.sessions import Session, key_digest, new_key
from forgerl.types import Message, ToolCall, Trajectory


def _session() -> Session:
    return Session("s", key_digest(new_key()), expires_at=1e18, trajectory=Trajectory())


def _encode(text: str) -> list[int]:  # one id per character: enough to follow the splicing
    return [ord(c) for c in text]


def _record(session: Session, text: str, completion: str, ids: list[int] | None = None) -> None:
    plan = session.plan(text, _encode(text), _encode)
    done = ids if ids is not None else [1000 + ord(c) for c in completion]  # "sampled" ids, not re-encodable
    session.record(plan, GenerationResult(done, [-0.1] * len(done), "stop", 3, len(plan.prompt_ids)), completion,
                   [], Message(role="assistant", content=completion, reasoning="r"), None)


def test_extension_splices_the_sampled_ids_and_a_rewrite_starts_a_root():
    s = _session()
    _record(s, "P1>", "c1")
    _record(s, "P1>c1|P2>", "c2")  # extends call 0
    _record(s, "other>", "c3")  # rewritten
    _record(s, "P1>c1|P2>c2|P3>", "c4")  # extends call 1, not call 0 (newest match wins)
    calls, notes = s.trajectory.calls, s.trajectory.metadata["gateway"]["calls"]
    assert calls[1].prompt_ids == _encode("P1>") + [1000 + ord("c"), 1000 + ord("1")] + _encode("|P2>")
    assert [n["parent"] for n in notes] == [None, 0, None, 1]
    assert [n["branch"] for n in notes] == [0, 0, 1, 0]
    assert notes[1]["retokenized"] and s.trajectory.metadata["new_roots"] == [0, 2]
    assert calls[3].prompt_ids[: len(calls[1].prompt_ids) + 2] == calls[1].prompt_ids + calls[1].completion_ids


def test_a_prompt_equal_to_the_previous_context_is_not_an_extension():
    s = _session()
    _record(s, "P>", "c")
    assert s.plan("P>c", _encode("P>c"), _encode).parent is None  # nothing new to generate from


def test_plan_ids_matches_on_prompt_plus_completion_ids():
    s = _session()
    _record(s, "ab", "x", ids=[7])
    assert s.plan_ids([*_encode("ab"), 7, 9]).parent == 0
    assert s.plan_ids([*_encode("ab"), 8, 9]).parent is None
    assert s.plan_ids([*_encode("ab"), 7]).parent is None


def test_restore_reasoning_only_for_replies_this_session_produced():
    s = _session()
    call = ToolCall(id="x", name="lookup", arguments={"item": "fig"})
    s.record(s.plan("p", [1], _encode), GenerationResult([5], [-1.0], "stop", 0, 1), "",
             [], Message(role="assistant", content="c", reasoning="why", tool_calls=[call]), None)
    back = [Message(role="assistant", content="c", tool_calls=[call.model_copy(update={"id": "renamed"})]),
            Message(role="assistant", content="not mine")]
    assert s.restore_reasoning(back) == 1
    assert back[0].reasoning == "why" and back[1].reasoning is None


def test_echoed_values_compare_as_json_values():
    from forgerl.gateway.sessions import same_value

    assert same_value({"n": 57, "x": 0.5}, {"n": 57.0, "x": 0.50}) and same_value([1, {"a": None}], [1, {"a": None}])
    assert not same_value(True, 1) and not same_value("57", 57) and not same_value({"a": 1}, {"a": 1, "b": 2})
    assert not same_value(float("nan"), float("nan"))  # nothing sampled is "equal" to a NaN echo
