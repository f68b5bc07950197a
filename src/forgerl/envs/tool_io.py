"""What the tools of every workspace family (swe, swe-js, swe-go, terminal, mle, appdev) share: the
JSON schema of a tool's arguments, a string argument read strictly, and an observation clipped to
what a turn can hold.

One place because the rules are one: a model's arguments are untrusted (a wrong type is a
`ToolError` the policy reads and can correct, never a crash), and an observation longer than
`MAX_OBSERVATION_CHARS` keeps its head and its tail — where a command's error and a file's end are —
and says how much was cut.
"""

from __future__ import annotations

from typing import Any

from forgerl.errors import ToolError

MAX_OBSERVATION_CHARS = 12_000


def object_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """The arguments' schema; extra keys are tolerated (the models of M2's scaffolds add some)."""
    return {"type": "object", "properties": properties, "required": required}


def closed_object_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """The arguments' schema, with no key beyond `properties` allowed."""
    return {**object_schema(properties, required), "additionalProperties": False}


def string_argument(args: dict[str, Any], name: str, required: bool = True) -> str | None:
    """`args[name]` when it is a string; None when it is absent and not `required`; else a ToolError."""
    value = args.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ToolError(f"{name} must be a string, got {type(value).__name__}")
    return value


def clip_observation(text: str, limit: int = MAX_OBSERVATION_CHARS) -> str:
    """`text`, or its first and last `limit // 2` characters with the number cut between them."""
    if len(text) <= limit:
        return text
    return text[: limit // 2] + f"\n[... {len(text) - limit} characters cut ...]\n" + text[-limit // 2 :]
