"""Typing argument text through a JSON schema (M2) and checking JSON values (Hermes, json_tools)."""

from __future__ import annotations

import pytest

from forgerl.chat.args import check_json_value, schema_types, text_value, type_text_value
from forgerl.errors import ParseError


def typed(raw: str, schema):
    return type_text_value(raw, schema, tool="t", param="p")


@pytest.mark.parametrize(
    ("raw", "schema", "want"),
    [
        ("42", {"type": "string"}, "42"),
        ("42", {"type": "integer"}, 42),
        ("-7", {"type": "number"}, -7),
        ("2.5", {"type": "number"}, 2.5),
        ("true", {"type": "boolean"}, True),
        ("null", {"type": "null"}, None),
        ('[1, "a"]', {"type": "array"}, [1, "a"]),
        ('{"a": {"b": null}}', {"type": "object"}, {"a": {"b": None}}),
        ("null", {"type": ["integer", "null"]}, None),
        ("hello", {"type": ["integer", "string"]}, "hello"),
        ("5", {"anyOf": [{"type": "integer"}, {"type": "string"}]}, 5),
        ("5", None, 5),  # undeclared: JSON best effort
        ("Paris", None, "Paris"),
        ('"quoted"', None, '"quoted"'),  # a JSON string stays the raw text
        ("", {"type": "string"}, ""),
    ],
)
def test_type_text_value(raw, schema, want) -> None:
    got = typed(raw, schema)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize(
    ("raw", "schema"),
    [
        ("3.5", {"type": "integer"}),
        ("true", {"type": "integer"}),  # bool is not an integer
        ("yes", {"type": "boolean"}),
        ("[1", {"type": "array"}),
        ("{}", {"type": "array"}),
        ("1" * 5000, {"type": "integer"}),  # beyond Python's int-parsing limit: still ParseError
        ("[" * 100_000, {"type": "array"}),  # too deep for json: still ParseError
    ],
)
def test_type_text_value_rejects(raw, schema) -> None:
    with pytest.raises(ParseError, match="'p' of tool 't'"):
        typed(raw, schema)


def test_check_json_value() -> None:
    assert check_json_value(3, {"type": "number"}, tool="t", param="p") == 3
    assert check_json_value("x", {"enum": ["x"]}, tool="t", param="p") == "x"  # no type: unchecked
    with pytest.raises(ParseError, match="must be number"):
        check_json_value(False, {"type": "number"}, tool="t", param="p")


def test_schema_types_and_text_value() -> None:
    assert schema_types({"type": "string"}) == ("string",)
    assert schema_types({"oneOf": [{"type": "integer"}, {"type": ["null", "string"]}]}) == ("integer", "null", "string")
    assert schema_types({"anyOf": [{"type": "integer"}, {}]}) is None
    assert schema_types({"type": "weird"}) is None
    assert text_value("raw") == "raw"
    assert text_value({"é": [1, None]}) == '{"é": [1, null]}'
