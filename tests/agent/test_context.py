"""DropOldToolOutputs: rewrites only over budget, keeps the newest outputs and the calls."""

from __future__ import annotations

import pytest

from forgerl.agent.context import ContextManager, DropOldToolOutputs
from forgerl.types import Message, ToolCall

HISTORY = [
    Message(role="user", content="q"),
    Message(role="assistant", tool_calls=[ToolCall(name="a"), ToolCall(name="b")]),
    Message(role="tool", content="out a"),
    Message(role="tool", content="out b"),
    Message(role="assistant", tool_calls=[ToolCall(name="c")]),
    Message(role="tool", content="out c"),
]


def test_under_budget_keeps_the_history():
    assert DropOldToolOutputs(100).maybe_rewrite(HISTORY, prompt_len=100) is None


def test_over_budget_drops_all_but_the_newest_outputs():
    manager = DropOldToolOutputs(100, keep_last=2, placeholder="-")
    assert isinstance(manager, ContextManager)
    rewritten = manager.maybe_rewrite(HISTORY, prompt_len=101)
    assert [m.content for m in rewritten] == ["q", "", "-", "out b", "", "out c"]
    assert rewritten[1].tool_calls == HISTORY[1].tool_calls
    assert HISTORY[2].content == "out a"  # the input is not mutated
    assert manager.maybe_rewrite(rewritten, prompt_len=101) is None  # nothing left to drop


def test_rejects_a_nonsense_budget():
    with pytest.raises(ValueError):
        DropOldToolOutputs(0)
