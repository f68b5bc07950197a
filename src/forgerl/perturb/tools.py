"""Tool information and tool-set perturbations, as a plan that maps every call both ways.

The agent sees *shown* tools; the environment only knows its *original* tools. A `ShownTool` carries
two functions: `back` (shown arguments -> the original call, used when the agent calls it) and
`forward` (an original call -> shown arguments, or None when this tool does not stand for it; used
to translate the gold path). Each transformation wraps both, so they compose in any order and the
verifier, which sees only original calls, scores the perturbed gold path exactly like the original.

Order inside a plan: tool-set changes (split, merge, JSON-argument swap, distractors) on the
original names first, then the naming style over every name, then descriptions and schemas
(rewritten descriptions, optional parameters, renesting, reordering), then the tool order.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from forgerl.errors import ToolError
from forgerl.perturb.naming import Namer
from forgerl.types import ToolCall, ToolSpec

Back = Callable[[dict[str, Any]], ToolCall]
Forward = Callable[[ToolCall], dict[str, Any] | None]

DISTRACTORS: tuple[tuple[ToolSpec, str], ...] = (
    (ToolSpec(name="get_weather", description="Current weather in a city.",
              parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
     "sunny, 21 C"),
    (ToolSpec(name="search_web", description="Search the web and return the top result's snippet.",
              parameters={"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}),
     "No results found."),
    (ToolSpec(name="send_email", description="Send an email to an address.",
              parameters={"type": "object", "properties": {"to": {"type": "string"}, "body": {"type": "string"}},
                          "required": ["to", "body"]}),
     "Email queued."),
    (ToolSpec(name="get_time", description="The current time in a timezone.",
              parameters={"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}),
     "12:00"),
)

OPTIONAL_PARAMS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("verbose", {"type": "boolean", "description": "Optional. Return more detail (ignored by most callers)."}),
    ("request_id", {"type": "string", "description": "Optional. An id echoed in logs."}),
    ("timeout_s", {"type": "number", "description": "Optional. Give up after this many seconds."}),
    ("locale", {"type": "string", "description": "Optional. Language of the output, e.g. en."}),
)


@dataclass
class ShownTool:
    spec: ToolSpec
    back: Back
    forward: Forward
    sources: tuple[str, ...]
    """Original tools this one stands for (empty for a distractor)."""
    canned: str | None = None
    """A distractor's fixed output (it never reaches the environment)."""


def _identity(spec: ToolSpec) -> ShownTool:
    name = spec.name
    return ShownTool(
        spec=spec,
        back=lambda args: ToolCall(name=name, arguments=dict(args)),
        forward=lambda call: dict(call.arguments) if call.name == name else None,
        sources=(name,),
    )


def _schema(spec: ToolSpec) -> dict[str, Any]:
    return copy.deepcopy(spec.parameters or {"type": "object", "properties": {}})


# --- tool set ----------------------------------------------------------------------------------


def split(tool: ShownTool, param: str, values: list[Any]) -> list[ShownTool]:
    """One tool per value of an enum parameter: lookup(table, item) -> lookup_price(item), lookup_weight(item)."""
    out = []
    for value in values:
        schema = _schema(tool.spec)
        schema["properties"].pop(param, None)
        schema["required"] = [r for r in schema.get("required", []) if r != param]

        def back(args: dict[str, Any], value: Any = value, inner: Back = tool.back) -> ToolCall:
            return inner({**args, param: value})

        def forward(call: ToolCall, value: Any = value, inner: Forward = tool.forward) -> dict[str, Any] | None:
            shown = inner(call)
            if shown is None or shown.get(param) != value:
                return None
            return {k: v for k, v in shown.items() if k != param}

        spec = ToolSpec(name=f"{tool.spec.name}_{value}", parameters=schema,
                        description=f"{tool.spec.description} Only for {param} = {value}.")
        out.append(ShownTool(spec, back, forward, tool.sources))
    return out


def merge(a: ShownTool, b: ShownTool, op_param: str = "operation") -> ShownTool:
    """Two tools as one with an operation selector; colliding parameter names get the tool's name."""
    pa, pb = _schema(a.spec), _schema(b.spec)
    shared = set(pa["properties"]) & set(pb["properties"])
    rename = {
        a.spec.name: {k: (f"{a.spec.name}_{k}" if k in shared else k) for k in pa["properties"]},
        b.spec.name: {k: (f"{b.spec.name}_{k}" if k in shared else k) for k in pb["properties"]},
    }
    properties: dict[str, Any] = {op_param: {"type": "string", "enum": [a.spec.name, b.spec.name],
                                             "description": "Which operation to run."}}
    for tool, schema in ((a, pa), (b, pb)):
        for k, v in schema["properties"].items():
            properties[rename[tool.spec.name][k]] = {**v, "description": (
                f"{v.get('description', '')} (for {tool.spec.name})".strip())}
    parts = {a.spec.name: a, b.spec.name: b}

    def back(args: dict[str, Any]) -> ToolCall:
        op = args.get(op_param)
        if op not in parts:
            raise ToolError(f"{op_param!r} must be one of {list(parts)}, got {op!r}")
        inverse = {v: k for k, v in rename[op].items()}
        own = {inverse[k]: v for k, v in args.items() if k in inverse}
        return parts[op].back(own)

    def forward(call: ToolCall) -> dict[str, Any] | None:
        for name, tool in parts.items():
            shown = tool.forward(call)
            if shown is not None:
                return {op_param: name, **{rename[name].get(k, k): v for k, v in shown.items()}}
        return None

    spec = ToolSpec(
        name=f"{a.spec.name}_and_{b.spec.name}",
        description=f"Two tools in one, chosen by the selector parameter. {a.spec.name}: {a.spec.description} "
                    f"{b.spec.name}: {b.spec.description}",
        parameters={"type": "object", "properties": properties, "required": [op_param], "additionalProperties": False},
    )
    return ShownTool(spec, back, forward, a.sources + b.sources)


def json_swap(tool: ShownTool) -> ShownTool:
    """An equivalent tool that takes its arguments as one JSON-encoded string."""
    example = json.dumps({k: "..." for k in _schema(tool.spec)["properties"]})

    def back(args: dict[str, Any]) -> ToolCall:
        payload = args.get("payload")
        try:
            decoded = json.loads(payload) if isinstance(payload, str) else None
        except json.JSONDecodeError as exc:
            raise ToolError(f"payload must be a JSON object string like {example}: {exc}") from None
        if not isinstance(decoded, dict):
            raise ToolError(f"payload must be a JSON object string like {example}, got {payload!r}")
        return tool.back(decoded)

    def forward(call: ToolCall) -> dict[str, Any] | None:
        shown = tool.forward(call)
        return None if shown is None else {"payload": json.dumps(shown)}

    spec = ToolSpec(
        name=f"{tool.spec.name}_json",
        description=f"{tool.spec.description} Pass the arguments as one JSON object string, e.g. {example}. "
                    f"Arguments: {json.dumps(_schema(tool.spec)['properties'])}",
        parameters={"type": "object", "properties": {"payload": {"type": "string"}}, "required": ["payload"]},
    )
    return ShownTool(spec, back, forward, tool.sources)


def distractor(spec: ToolSpec, output: str) -> ShownTool:
    def back(args: dict[str, Any]) -> ToolCall:  # never reaches the environment (canned output)
        raise AssertionError("a distractor tool has no original call")

    return ShownTool(spec, back, lambda call: None, (), canned=output)


# --- tool information --------------------------------------------------------------------------


def rename(tool: ShownTool, namer: Namer, taken: set[str]) -> ShownTool:
    """New tool name and parameter names in the episode's style."""
    schema = _schema(tool.spec)
    params_taken: set[str] = set()
    mapping = {k: namer.rename(k, params_taken, prefix=False) for k in schema["properties"]}
    schema["properties"] = {mapping[k]: v for k, v in schema["properties"].items()}
    if "required" in schema:
        schema["required"] = [mapping.get(r, r) for r in schema["required"]]
    inverse = {v: k for k, v in mapping.items()}
    inner_back, inner_forward = tool.back, tool.forward

    def back(args: dict[str, Any]) -> ToolCall:
        return inner_back({inverse.get(k, k): v for k, v in args.items()})

    def forward(call: ToolCall) -> dict[str, Any] | None:
        shown = inner_forward(call)
        return None if shown is None else {mapping.get(k, k): v for k, v in shown.items()}

    spec = ToolSpec(name=namer.rename(tool.spec.name, taken), description=tool.spec.description, parameters=schema)
    return ShownTool(spec, back, forward, tool.sources, tool.canned)


def add_optional(tool: ShownTool, extras: dict[str, dict[str, Any]]) -> ShownTool:
    """Optional parameters the tool accepts and ignores."""
    schema = _schema(tool.spec)
    extras = {k: v for k, v in extras.items() if k not in schema["properties"]}
    schema["properties"].update(copy.deepcopy(extras))
    inner_back = tool.back

    def back(args: dict[str, Any]) -> ToolCall:
        return inner_back({k: v for k, v in args.items() if k not in extras})

    return ShownTool(tool.spec.model_copy(update={"parameters": schema}), back, tool.forward, tool.sources, tool.canned)


def renest(tool: ShownTool, key: str) -> ShownTool:
    """All parameters moved under one object parameter: f(a, b) -> f(key={a, b})."""
    inner = _schema(tool.spec)
    inner.pop("additionalProperties", None)
    schema = {"type": "object", "properties": {key: {**inner, "type": "object", "description": "All arguments."}},
              "required": [key], "additionalProperties": False}
    inner_back, inner_forward = tool.back, tool.forward

    def back(args: dict[str, Any]) -> ToolCall:
        nested = args.get(key)
        if not isinstance(nested, dict):
            raise ToolError(f"the arguments must be an object under {key!r}, got {nested!r}")
        return inner_back(nested)

    def forward(call: ToolCall) -> dict[str, Any] | None:
        shown = inner_forward(call)
        return None if shown is None else {key: shown}

    return ShownTool(tool.spec.model_copy(update={"parameters": schema}), back, forward, tool.sources, tool.canned)


def reorder(tool: ShownTool, rng: random.Random) -> ShownTool:
    schema = _schema(tool.spec)
    keys = list(schema["properties"])
    rng.shuffle(keys)
    schema["properties"] = {k: schema["properties"][k] for k in keys}
    return ShownTool(tool.spec.model_copy(update={"parameters": schema}), tool.back, tool.forward, tool.sources,
                     tool.canned)


DESCRIPTION_STYLES = ("terse", "verbose", "imperative", "reworded")


def rewrite_description(text: str, style: str) -> str:
    """The same information in other words; `terse` keeps the first sentence only."""
    text = text.strip()
    if not text:
        return text
    if style == "terse":
        return text.split(". ")[0].rstrip(".") + "."
    if style == "verbose":
        return f"{text} The call is cheap and has no side effects unless stated; use it whenever it helps."
    if style == "imperative":
        return f"Use this to {text[0].lower()}{text[1:]}"
    return f"Tool: {text[0].lower()}{text[1:]}"


@dataclass
class ToolPlan:
    """The tools one episode shows, and how each maps back; `changes` is the record of what was done."""

    tools: list[ShownTool]
    changes: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def identity(cls, specs: list[ToolSpec]) -> ToolPlan:
        return cls([_identity(s) for s in specs])

    def specs(self) -> list[ToolSpec]:
        return [t.spec for t in self.tools]

    def find(self, name: str) -> ShownTool | None:
        return next((t for t in self.tools if t.spec.name == name), None)

    def to_original(self, call: ToolCall) -> ToolCall | None:
        """The environment's call for a shown call; None for a distractor. ToolError when the arguments
        cannot be mapped (reported to the agent like any tool error)."""
        tool = self.find(call.name)
        if tool is None:
            raise ToolError(f"unknown tool {call.name!r}; available: {', '.join(t.spec.name for t in self.tools)}")
        if tool.canned is not None:
            return None
        return tool.back(dict(call.arguments)).model_copy(update={"id": call.id})

    def to_shown(self, call: ToolCall) -> ToolCall:
        """The shown call that does what an original call does (for the gold path)."""
        for tool in self.tools:
            shown = tool.forward(call)
            if shown is not None:
                return ToolCall(id=call.id, name=tool.spec.name, arguments=shown)
        raise ValueError(f"no shown tool stands for {call.name!r}: the tool plan lost a tool")

    def mentions(self) -> dict[str, str]:
        """Original tool name -> how prompts should now mention it."""
        out: dict[str, list[str]] = {}
        for tool in self.tools:
            for source in tool.sources:
                out.setdefault(source, []).append(tool.spec.name)
        return {k: " / ".join(dict.fromkeys(v)) for k, v in out.items()}


def plan_tool_set(plan: ToolPlan, strength: float, rng: random.Random, protected: list[str]) -> ToolPlan:
    """Split, merge, swap and add distractors. At strength 0 one change, at 1 up to all four kinds."""
    tools = list(plan.tools)
    kinds = ["distractors", "split", "merge", "swap"]
    rng.shuffle(kinds)
    chosen = kinds[: 1 + round(strength * 3)]
    changes = list(plan.changes)

    def free(t: ShownTool) -> bool:
        return t.canned is None and not set(t.sources) & set(protected) and len(t.sources) == 1

    if "split" in chosen:
        candidates = [(i, k, p["enum"]) for i, t in enumerate(tools) if free(t)
                      for k, p in _schema(t.spec)["properties"].items() if 2 <= len(p.get("enum", [])) <= 4]
        if candidates:
            i, param, values = rng.choice(candidates)
            changes.append({"change": "split", "tool": tools[i].spec.name, "by": param, "values": list(values)})
            tools[i:i + 1] = split(tools[i], param, list(values))
    if "merge" in chosen:
        idx = [i for i, t in enumerate(tools) if free(t)]
        if len(idx) >= 2:
            i, j = sorted(rng.sample(idx, 2))
            changes.append({"change": "merge", "tools": [tools[i].spec.name, tools[j].spec.name]})
            merged = merge(tools[i], tools[j])
            tools = [*tools[:i], merged, *tools[i + 1:j], *tools[j + 1:]]
    if "swap" in chosen:
        idx = [i for i, t in enumerate(tools) if free(t)]
        if idx:
            i = rng.choice(idx)
            changes.append({"change": "json_swap", "tool": tools[i].spec.name})
            tools[i] = json_swap(tools[i])
    if "distractors" in chosen:
        picked = rng.sample(range(len(DISTRACTORS)), 1 + round(strength * (len(DISTRACTORS) - 1)))
        names = {t.spec.name for t in tools}
        added = [distractor(*DISTRACTORS[k]) for k in sorted(picked) if DISTRACTORS[k][0].name not in names]
        changes.append({"change": "distractors", "tools": [t.spec.name for t in added]})
        tools.extend(added)
    rng.shuffle(tools)
    changes.append({"change": "order", "tools": [t.spec.name for t in tools]})
    return ToolPlan(tools, changes)


def plan_tool_info(plan: ToolPlan, style: str, strength: float, rng: random.Random) -> ToolPlan:
    """Rename everything in `style`; then, each with probability `strength`, rewrite descriptions,
    add optional parameters, renest one tool's parameters and reorder parameters."""
    namer = Namer(style, rng)
    taken: set[str] = set()
    tools = [rename(t, namer, taken) for t in plan.tools]
    changes = [*plan.changes, {"change": "rename", "style": style,
                               "names": {a.spec.name: b.spec.name for a, b in zip(plan.tools, tools)}}]
    edits = [e for e in ("descriptions", "optional", "renest", "reorder") if rng.random() < strength]
    if "descriptions" in edits:
        styles = {t.spec.name: rng.choice(DESCRIPTION_STYLES) for t in tools}
        tools = [ShownTool(t.spec.model_copy(update={"description": rewrite_description(t.spec.description,
                                                                                         styles[t.spec.name])}),
                           t.back, t.forward, t.sources, t.canned) for t in tools]
        changes.append({"change": "descriptions", "styles": styles})
    if "optional" in edits:
        name, schema = OPTIONAL_PARAMS[rng.randrange(len(OPTIONAL_PARAMS))]
        extra = {namer.rename(name, prefix=False): schema}
        tools = [add_optional(t, extra) for t in tools]
        changes.append({"change": "optional_params", "added": list(extra)})
    if "renest" in edits:
        candidates = [i for i, t in enumerate(tools) if _schema(t.spec)["properties"]]
        if candidates:
            i = rng.choice(candidates)
            key = namer.rename("input", prefix=False)
            changes.append({"change": "renest", "tool": tools[i].spec.name, "under": key})
            tools[i] = renest(tools[i], key)
    if "reorder" in edits:
        tools = [reorder(t, rng) for t in tools]
        changes.append({"change": "reorder_params"})
    return ToolPlan(tools, changes)
