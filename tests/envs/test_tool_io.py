"""The helpers every workspace family's tools share (envs/tool_io.py), against hand-written values."""

from __future__ import annotations

import pytest

from forgerl.envs.tool_io import clip_observation, closed_object_schema, object_schema, string_argument
from forgerl.errors import ToolError


def test_clip_keeps_head_and_tail_and_says_how_much_was_cut() -> None:
    assert clip_observation("abcdef", 6) == "abcdef"
    assert clip_observation("0123456789", 4) == "01\n[... 6 characters cut ...]\n89"


def test_string_argument_is_strict() -> None:
    assert string_argument({"path": "a.py"}, "path") == "a.py"
    assert string_argument({}, "path", required=False) is None
    for args in ({}, {"path": 3}, {"path": ["a"]}):
        with pytest.raises(ToolError, match="path must be a string, got"):
            string_argument(args, "path")


def test_schemas() -> None:
    props = {"path": {"type": "string"}}
    assert object_schema(props, ["path"]) == {"type": "object", "properties": props, "required": ["path"]}
    assert closed_object_schema(props, [])["additionalProperties"] is False
