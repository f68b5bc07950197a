"""Typing and checking tool-call arguments through the tool's JSON schema.

Two situations, one set of rules:

* XML-style formats (M2) carry every argument value as *text*: strings raw, everything else as
  JSON. `type_text_arguments` turns the text back into the value the schema declares, so a
  parsed call has the same `arguments` the agent would have produced in a JSON format.
* JSON-style formats (Hermes, json_tools) already carry typed values. `check_json_arguments` only
  checks them against the schema.

Why check at all: a call whose arguments do not fit the schema would fail inside the tool, far
from its cause. As a parse error it becomes an observation the agent sees and a process penalty
the reward can use (DESIGN.md contract 3).

What is checked: the tool name (when tools are given), required parameters, and the top-level
JSON type of each declared parameter (`type` as a string or list, or the types of `anyOf`/`oneOf`
alternatives). Not checked: enums, ranges, formats, nested item schemas. Parameters the schema
does not declare are kept: as JSON when their text is a JSON non-string value, else as the raw
string (best effort; there is nothing to type them by).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from forgerl.errors import ParseError
from forgerl.types import ToolSpec

_JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")
_MISSING = object()


def schema_types(schema: Any) -> tuple[str, ...] | None:
    """The JSON types a schema allows, or None when the schema does not say (anything goes)."""
    if not isinstance(schema, Mapping):
        return None
    t = schema.get("type")
    if isinstance(t, str):
        return (t,) if t in _JSON_TYPES else None
    if isinstance(t, list):
        known = tuple(x for x in t if isinstance(x, str) and x in _JSON_TYPES)
        return known or None
    for key in ("anyOf", "oneOf"):
        alternatives = schema.get(key)
        if isinstance(alternatives, list) and alternatives:
            found: list[str] = []
            for alt in alternatives:
                sub = schema_types(alt)
                if sub is None:
                    return None
                found.extend(x for x in sub if x not in found)
            return tuple(found)
    return None


def value_matches(value: Any, json_type: str) -> bool:
    """Whether a Python value (as json.loads gives it) is of one JSON type. bool is not a number."""
    if json_type == "string":
        return isinstance(value, str)
    if json_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if json_type == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if json_type == "boolean":
        return isinstance(value, bool)
    if json_type == "array":
        return isinstance(value, list)
    if json_type == "object":
        return isinstance(value, dict)
    if json_type == "null":
        return value is None
    return False


def _loads(text: str) -> Any:
    """json.loads that returns _MISSING instead of raising (deep nesting and huge ints included)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _MISSING


def _describe(types: Sequence[str]) -> str:
    return " or ".join(types)


def type_text_value(raw: str, schema: Any, *, tool: str, param: str) -> Any:
    """One argument value written as text, typed through its parameter schema."""
    types = schema_types(schema)
    if types is None:
        value = _loads(raw)
        return raw if value is _MISSING or isinstance(value, str) else value
    if types == ("string",):
        return raw
    value = _loads(raw)
    if value is not _MISSING and any(value_matches(value, t) for t in types if t != "string"):
        return value
    if "string" in types:
        return raw
    shown = raw if len(raw) <= 60 else raw[:60] + "..."
    raise ParseError(
        f"argument {param!r} of tool {tool!r} must be {_describe(types)} (written as JSON), got {shown!r}"
    )


def check_json_value(value: Any, schema: Any, *, tool: str, param: str) -> Any:
    """One already-typed argument value, checked against its parameter schema."""
    types = schema_types(schema)
    if types is None or any(value_matches(value, t) for t in types):
        return value
    shown = json.dumps(value, ensure_ascii=False)
    shown = shown if len(shown) <= 60 else shown[:60] + "..."
    raise ParseError(f"argument {param!r} of tool {tool!r} must be {_describe(types)}, got {shown}")


def find_tool(name: str, tools: Sequence[ToolSpec]) -> ToolSpec | None:
    """The spec called `name`; None when no tools were given; ParseError for an unknown name."""
    if not tools:
        return None
    for spec in tools:
        if spec.name == name:
            return spec
    known = ", ".join(t.name for t in tools)
    raise ParseError(f"unknown tool {name!r}; the available tools are: {known}")


def _properties(spec: ToolSpec) -> Mapping[str, Any]:
    props = spec.parameters.get("properties") if isinstance(spec.parameters, Mapping) else None
    return props if isinstance(props, Mapping) else {}


def _check_required(spec: ToolSpec, args: Mapping[str, Any]) -> None:
    required = spec.parameters.get("required") if isinstance(spec.parameters, Mapping) else None
    if not isinstance(required, list):
        return
    missing = [r for r in required if isinstance(r, str) and r not in args]
    if missing:
        raise ParseError(f"tool {spec.name!r} is missing required argument(s): {', '.join(missing)}")


def type_text_arguments(name: str, raw_args: Mapping[str, str], tools: Sequence[ToolSpec]) -> dict[str, Any]:
    """Text-valued arguments of a call to `name`, typed through the tool's schema."""
    spec = find_tool(name, tools)
    props = _properties(spec) if spec is not None else {}
    typed = {k: type_text_value(v, props.get(k), tool=name, param=k) for k, v in raw_args.items()}
    if spec is not None:
        _check_required(spec, typed)
    return typed


def check_json_arguments(name: str, args: Mapping[str, Any], tools: Sequence[ToolSpec]) -> dict[str, Any]:
    """JSON-valued arguments of a call to `name`, checked against the tool's schema."""
    spec = find_tool(name, tools)
    props = _properties(spec) if spec is not None else {}
    checked = {k: check_json_value(v, props.get(k), tool=name, param=k) for k, v in args.items()}
    if spec is not None:
        _check_required(spec, checked)
    return checked


def text_value(value: Any) -> str:
    """How XML-style formats write an argument value: strings raw, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
