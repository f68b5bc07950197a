"""The BFCL items as the bfcl-eval package ships them: categories, items, ground truth, function docs,
deterministic train/eval splits, and the conversions forgerl needs (BFCL schema -> JSON schema,
ground-truth call strings -> ToolCalls, possible answers -> one gold call).

Nothing here imports the package's model handlers (they pull in every provider SDK); only its data
files and, in `checkers.py`, its checkers and simulated APIs.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from forgerl.errors import ConfigError
from forgerl.types import ToolCall, ToolSpec

# category -> difficulty (the family's dial): one call, choose among functions, parallel calls,
# stateful multi-turn, multi-turn with missing parameters or long context
SINGLE_TURN = {
    "simple_python": 1, "live_simple": 1,
    "multiple": 2, "live_multiple": 2,
    "parallel": 3, "parallel_multiple": 3, "live_parallel": 3, "live_parallel_multiple": 3,
}
MULTI_TURN = {"multi_turn_base": 4, "multi_turn_miss_param": 5, "multi_turn_long_context": 5}
CATEGORIES = {**SINGLE_TURN, **MULTI_TURN}
# Not wrapped: irrelevance/relevance (the right answer is no call, so a no-op would score 1),
# Java/JavaScript (values are source-code strings of another language), multi_turn_miss_func
# (a turn with no user message where held-out functions appear), web_search/memory (network and
# a sentence-transformers model), format_sensitivity (a prompt-format study, not tasks).

# Items whose ground truth fails the suite's own AST checker (bfcl-eval 2026.3.23: a listed
# parameter the function does not declare, or a dict answer the checker cannot match): no gold
# path can score 1, so they are not tasks. tests/envs/bfcl checks every other item's gold path.
BROKEN_ITEMS = frozenset({"live_simple_106-63-0", "live_simple_112-68-0", "live_multiple_862-181-3",
                          "live_multiple_964-207-0"})

EVAL_FRACTION_PER_MILLE = 200  # 20% of the items of every category are eval items


def _package_dir() -> Path:
    try:
        import bfcl_eval
    except ImportError as exc:
        raise ConfigError(
            "the bfcl family needs the bfcl-eval package, installed WITHOUT its dependencies (a plain "
            "install pulls a CUDA torch and many provider SDKs): pip install --no-deps bfcl-eval==2026.3.23 "
            "and pip install 'forgerl[suites]'") from exc
    return Path(bfcl_eval.__file__).parent


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@functools.cache
def load_category(category: str) -> tuple[dict[str, Any], ...]:
    """The items of `category`, each with its ground truth under "ground_truth"."""
    if category not in CATEGORIES:
        raise ConfigError(f"unknown or unsupported BFCL category {category!r}; supported: {', '.join(CATEGORIES)}")
    data = _package_dir() / "data"
    items = _read_jsonl(data / f"BFCL_v4_{category}.json")
    answers = {row["id"]: row["ground_truth"] for row in _read_jsonl(data / "possible_answer" / f"BFCL_v4_{category}.json")}
    missing = [item["id"] for item in items if item["id"] not in answers]
    if missing:
        raise ConfigError(f"bfcl-eval data for {category} has items without ground truth: {missing[:5]}")
    return tuple({**item, "ground_truth": answers[item["id"]], "category": category}
                 for item in items if item["id"] not in BROKEN_ITEMS)


@functools.cache
def item_by_id(category: str, item_id: str) -> dict[str, Any]:
    for item in load_category(category):
        if item["id"] == item_id:
            return item
    raise ConfigError(f"no BFCL item {item_id!r} in category {category}")


def split_of(item_id: str) -> str:
    """"eval" for about 20% of items, "train" for the rest: a hash of the item id, so the split
    never depends on the order, the seed or the package version's other items."""
    digest = int.from_bytes(hashlib.sha256(f"bfcl-split:{item_id}".encode()).digest()[:4], "big")
    return "eval" if digest % 1000 < EVAL_FRACTION_PER_MILLE else "train"


def items_in(category: str, split: str) -> list[dict[str, Any]]:
    """The items of `category` in `split` ("train", "eval" or "all"), in file order."""
    if split not in ("train", "eval", "all"):
        raise ConfigError(f"split must be train, eval or all, got {split!r}")
    return [item for item in load_category(category) if split == "all" or split_of(item["id"]) == split]


def answerable_turns(item: dict[str, Any]) -> list[int]:
    """Turns with a non-empty ground truth (a turn whose right answer is 'call nothing, ask' would
    let a no-op score 1, so it is not a task; it stays in the history of later turns)."""
    return [i for i, calls in enumerate(item["ground_truth"]) if calls]


# --- schemas -----------------------------------------------------------------------------------

_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": None}


def json_schema(schema: Any) -> Any:
    """BFCL's parameter schema (Python-ish types: dict, float, tuple, any) as JSON schema."""
    if isinstance(schema, list):
        return [json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            mapped = _TYPES.get(value, value)
            if mapped is not None:
                out["type"] = mapped
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {name: json_schema(prop) for name, prop in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = json_schema(value)
        else:
            out[key] = value
    return out


def tool_spec(doc: dict[str, Any]) -> ToolSpec:
    parameters = json_schema(doc.get("parameters") or {"type": "dict", "properties": {}})
    parameters.setdefault("type", "object")
    parameters.setdefault("properties", {})
    return ToolSpec(name=doc["name"], description=doc.get("description", ""), parameters=parameters)


@functools.cache
def class_docs(class_name: str) -> tuple[dict[str, Any], ...]:
    from bfcl_eval.constants.executable_backend_config import MULTI_TURN_FUNC_DOC_FILE_MAPPING

    path = _package_dir() / "data" / "multi_turn_func_doc" / MULTI_TURN_FUNC_DOC_FILE_MAPPING[class_name]
    return tuple(_read_jsonl(path))


# --- ground truth ------------------------------------------------------------------------------


def parse_call(text: str, positional: list[str]) -> ToolCall:
    """A ground-truth call string such as "mv(source='a', destination='b')" or "sort('x')" as a
    ToolCall; `positional` names the function's parameters in order. Literals only: never eval."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ConfigError(f"cannot parse BFCL ground-truth call {text!r}: {exc.msg}") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ConfigError(f"BFCL ground-truth call {text!r} is not a plain function call")
    if len(node.args) > len(positional):
        raise ConfigError(f"BFCL ground-truth call {text!r} has more positional arguments than parameters {positional}")
    arguments = {positional[i]: ast.literal_eval(arg) for i, arg in enumerate(node.args)}
    arguments.update({kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg is not None})
    return ToolCall(name=node.func.id, arguments=arguments)


_OMITTED = object()


def _choose(options: Any, required: bool = False) -> Any:
    """One acceptable value from a possible-answer list: omitted where "" (= may be left out) is
    listed and the parameter is optional, else the first listed non-empty value."""
    if not isinstance(options, list) or not options:
        return options
    if "" in options and not required:
        return _OMITTED
    return _resolve(next((o for o in options if o != ""), options[0]))


def _resolve(value: Any) -> Any:
    if isinstance(value, dict):  # a nested dict answer: each key has its own option list
        resolved = {k: _choose(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _OMITTED}
    if isinstance(value, list):
        return [_resolve(v) if isinstance(v, dict) else v for v in value]
    return value


def gold_single_calls(ground_truth: list[dict[str, Any]], functions: list[dict[str, Any]]) -> list[ToolCall]:
    """One call per expected function, each argument an acceptable value from its possible answers."""
    required = {f["name"]: set(f.get("parameters", {}).get("required", [])) for f in functions}
    calls = []
    for expected in ground_truth:
        ((name, params),) = expected.items()
        needed = required.get(name, set())
        chosen = {k: _choose(opts, k in needed) for k, opts in params.items()}
        calls.append(ToolCall(name=name, arguments={k: v for k, v in chosen.items() if v is not _OMITTED}))
    return calls
