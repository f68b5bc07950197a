"""Bug, feature and slowdown injection into JavaScript through a real parser (tree-sitter).

The tree says where an edit makes sense; the edit replaces only the characters it must, so the rest
of the file stays byte-identical and the gold fix is the exact inverse hunk (swe's `Mutation`,
reused as is). Functions are found by qualified name: `name` for a function declaration or a
`const name = (...) =>` / `function` expression, `Class.method` for a class method, `key` for an
object property, and the assignment target (`module.exports`) for an anonymous exported function.

Bug operators: negate_comparison, shift_boundary, swap_arithmetic, swap_logical, off_by_one,
negate_condition, swap_branches, drop_statement, flip_bool. Feature removal replaces a body with
`throw new Error("not implemented")`; the `recompute` slowdown makes a function compute its result
several times over (a retry loop around an arrow that captures `this` and `arguments`, so the
result is unchanged for a pure function).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from forgerl.envs.swe.mutate import Candidate, Mutation, TextEdit
from forgerl.errors import ConfigError

FUNCTION_TYPES = ("function_declaration", "function_expression", "arrow_function", "method_definition",
                  "generator_function_declaration", "function")
RECOMPUTE_TIMES = 50
NOT_IMPLEMENTED = 'throw new Error("not implemented")'


@cache
def _parser() -> Any:
    try:
        import tree_sitter  # heavy: the swe extra's parser, only needed to generate tasks
        import tree_sitter_javascript
    except ImportError as exc:
        raise ConfigError("swe-js mutation needs tree-sitter and tree-sitter-javascript: pip install 'forgerl[swe]'") from exc
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_javascript.language()))


class JsSource:
    """A file's text, its syntax tree, and byte -> character offsets (tree-sitter counts bytes)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.data = text.encode("utf-8")
        self.tree = _parser().parse(self.data)
        self._ascii = len(self.data) == len(text)

    def char(self, byte: int) -> int:
        return byte if self._ascii else len(self.data[:byte].decode("utf-8", errors="replace"))

    def span(self, node: Any) -> tuple[int, int]:
        return self.char(node.start_byte), self.char(node.end_byte)

    def segment(self, node: Any) -> str:
        start, end = self.span(node)
        return self.text[start:end]

    def edit(self, node: Any, text: str) -> TextEdit:
        start, end = self.span(node)
        return TextEdit(start, end, text)

    @property
    def has_errors(self) -> bool:
        return bool(self.tree.root_node.has_error)


def parses(text: str) -> bool:
    return not JsSource(text).has_errors


def _walk(node: Any) -> Iterator[Any]:
    yield node
    for child in node.children:
        yield from _walk(child)


def _name(node: Any, src: JsSource) -> str | None:
    """The qualified name of a function node, or None for an anonymous callback."""
    parent = node.parent
    if node.type in ("function_declaration", "generator_function_declaration"):
        return src.segment(node.child_by_field_name("name"))
    if node.type == "method_definition":
        method = src.segment(node.child_by_field_name("name"))
        cls = node.parent.parent if node.parent is not None else None
        cls_name = cls.child_by_field_name("name") if cls is not None and cls.type in ("class_declaration", "class") else None
        return f"{src.segment(cls_name)}.{method}" if cls_name is not None else method
    if parent is None:
        return None
    if parent.type == "variable_declarator" and parent.child_by_field_name("value") == node:
        return src.segment(parent.child_by_field_name("name"))
    if parent.type == "pair" and parent.child_by_field_name("value") == node:
        return src.segment(parent.child_by_field_name("key"))
    if parent.type == "assignment_expression" and parent.child_by_field_name("right") == node:
        return src.segment(parent.child_by_field_name("left"))
    return None


def find_function(src: JsSource, name: str) -> Any:
    found = [n for n in _walk(src.tree.root_node) if n.type in FUNCTION_TYPES and _name(n, src) == name]
    if len(found) != 1:
        raise ConfigError(f"function {name!r} found {len(found)} times in the source; a target names one function")
    return found[0]


# --- bug operators ---------------------------------------------------------------------------

_NEGATE = {"===": "!==", "!==": "===", "==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}
_BOUNDARY = {"<": "<=", "<=": "<", ">": ">=", ">=": ">"}
_ARITH = {"+": "-", "-": "+", "*": "/", "/": "*", "%": "*"}
_LOGIC = {"&&": "||", "||": "&&"}


def _operator_token(node: Any) -> Any:
    return node.child_by_field_name("operator")


def _binary(node: Any, src: JsSource) -> Iterator[Candidate]:
    op = _operator_token(node)
    token = src.segment(op)
    for name, table in (("negate_comparison", _NEGATE), ("shift_boundary", _BOUNDARY), ("swap_arithmetic", _ARITH),
                        ("swap_logical", _LOGIC)):
        if token in table:
            left = node.child_by_field_name("left")
            if name == "swap_arithmetic" and token == "+" and left.type in ("string", "template_string"):
                continue  # string concatenation: '-' would just give NaN
            yield Candidate(name, (src.edit(op, table[token]),), f"{token} -> {table[token]} in {src.segment(node)[:60]}")


def _number(node: Any, src: JsSource) -> Iterator[Candidate]:
    text = src.segment(node)
    if not text.isdigit() or len(text) > 6:
        return
    value = int(text)
    yield Candidate("off_by_one", (src.edit(node, str(value + 1)),), f"{value} -> {value + 1}")
    if value > 0:
        yield Candidate("off_by_one", (src.edit(node, str(value - 1)),), f"{value} -> {value - 1}")


def _condition(node: Any, src: JsSource) -> Iterator[Candidate]:
    cond = node.child_by_field_name("condition")
    if cond is None:
        return
    inner = cond.named_children[0] if cond.type == "parenthesized_expression" and cond.named_children else cond
    text = src.segment(inner)
    yield Candidate("negate_condition", (src.edit(inner, f"!({text})"),), f"negated {text[:60]}")
    if node.type == "ternary_expression":
        yes, no = node.child_by_field_name("consequence"), node.child_by_field_name("alternative")
        yield Candidate("swap_branches", (src.edit(yes, src.segment(no)), src.edit(no, src.segment(yes))),
                        f"swapped the branches of {text[:60]} ? ... : ...")
    if node.type == "if_statement":
        alt = node.child_by_field_name("alternative")
        yes = node.child_by_field_name("consequence")
        body = alt.named_children[0] if alt is not None and alt.named_children else None
        if body is not None and body.type == "statement_block" and yes.type == "statement_block":
            yield Candidate("swap_branches", (src.edit(yes, src.segment(body)), src.edit(body, src.segment(yes))),
                            f"swapped the branches of if ({text[:60]})")


def _statement(node: Any, src: JsSource) -> Iterator[Candidate]:
    parent = node.parent
    if parent is None or parent.type != "statement_block" or len(parent.named_children) < 2:
        return
    text = src.segment(node)
    if text.startswith(("'use strict'", '"use strict"')):
        return
    yield Candidate("drop_statement", (src.edit(node, ""),), f"removed {text[:60]}")


def _boolean(node: Any, src: JsSource) -> Iterator[Candidate]:
    flipped = "false" if node.type == "true" else "true"
    yield Candidate("flip_bool", (src.edit(node, flipped),), f"{node.type} -> {flipped}")


_DISPATCH = {
    "binary_expression": _binary, "number": _number, "if_statement": _condition, "ternary_expression": _condition,
    "while_statement": _condition, "expression_statement": _statement, "return_statement": _statement,
    "true": _boolean, "false": _boolean,
}  # fmt: skip


def bug_candidates(src: JsSource, function: str, skip: tuple[str, ...] = ()) -> list[Candidate]:
    """Every bug operator's proposals inside `function`, leaving out the bodies of nested
    functions named in `skip` (they are targets of their own)."""
    root = find_function(src, function)
    body = root.child_by_field_name("body")
    out: list[Candidate] = []

    def visit(node: Any) -> None:
        if node is not root and node.type in FUNCTION_TYPES and _name(node, src) in skip:
            return
        handler = _DISPATCH.get(node.type)
        if handler is not None:
            out.extend(handler(node, src))
        for child in node.children:
            visit(child)

    visit(body)
    return out


# --- features and slowdowns ----------------------------------------------------------------------


def _indent_of(src: JsSource, offset: int) -> str:
    line_start = src.text.rfind("\n", 0, offset) + 1
    line = src.text[line_start:offset]
    return line[: len(line) - len(line.lstrip())]


def removal(src: JsSource, function: str) -> Candidate:
    """The function's body replaced by a not-implemented error: the feature to re-implement."""
    node = find_function(src, function)
    body = node.child_by_field_name("body")
    indent = _indent_of(src, src.span(node)[0])
    step = "\t" if "\t" in _indent_of(src, src.span(body.named_children[0])[0] if body.named_children else 0) else "  "
    text = f"{{\n{indent}{step}{NOT_IMPLEMENTED}\n{indent}}}"
    return Candidate("remove_feature", (src.edit(body, text),), f"removed the body of {function}")


def recompute(src: JsSource, function: str, times: int = RECOMPUTE_TIMES) -> Candidate | None:
    """The function's result computed `times` times over: a slowdown that keeps the result of a
    pure function. None for generators and async functions."""
    node = find_function(src, function)
    body = node.child_by_field_name("body")
    head = src.text[src.span(node)[0] : src.span(body)[0]]
    if "async" in head.split() or "*" in head or any(
            n.type in ("yield_expression", "await_expression") for n in _walk(body)):
        return None
    indent = _indent_of(src, src.span(node)[0])
    step = "\t" if "\t" in src.segment(body) else "  "
    inner = src.segment(body).replace("\n", "\n" + step)
    if body.type != "statement_block":
        inner = f"({inner})"
    text = (f"{{\n{indent}{step}const compute = () => {inner}\n{indent}{step}let result\n"
            f"{indent}{step}for (let attempt = 0; attempt < {times}; attempt++) {{\n"
            f"{indent}{step}{step}result = compute()\n{indent}{step}}}\n{indent}{step}return result\n{indent}}}")
    return Candidate("recompute", (src.edit(body, text),), f"{function} computes its result {times} times")


# --- hunks -------------------------------------------------------------------------------------


def apply_edits(text: str, edits: tuple[TextEdit, ...]) -> str:
    for e in sorted(edits, reverse=True):
        text = text[: e.start] + e.text + text[e.end :]
    return text


def to_mutation(original: str, function: str, candidate: Candidate) -> Mutation:
    """The candidate as a line hunk with one context line each side (swe's `Mutation`)."""
    buggy = apply_edits(original, candidate.edits)
    old, new = original.splitlines(keepends=True), buggy.splitlines(keepends=True)
    first = 0
    while first < min(len(old), len(new)) and old[first] == new[first]:
        first += 1
    tail = 0
    while tail < min(len(old), len(new)) - first and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    start = max(0, first - 1)
    old_end, new_end = min(len(old), len(old) - tail + 1), min(len(new), len(new) - tail + 1)
    return Mutation(operator=candidate.operator, function=function, line_start=start + 1,
                    original="".join(old[start:old_end]), buggy="".join(new[start:new_end]),
                    description=candidate.description)


@dataclass(frozen=True)
class Injected:
    """A mutation of one file of a package (a task may hold two: merged)."""

    module: str
    mutation: Mutation

    def to_dict(self) -> dict[str, Any]:
        return {"module": self.module, **self.mutation.to_dict()}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Injected:
        fields = {k: v for k, v in data.items() if k != "module"}
        return Injected(data["module"], Mutation(**fields))


def apply_all(files: dict[str, str], injected: list[Injected]) -> dict[str, str]:
    """`files` with every mutation applied, the later ones of one file first (line numbers of the
    earlier hunks stay valid)."""
    out = dict(files)
    for item in sorted(injected, key=lambda i: (i.module, -i.mutation.line_start)):
        out[item.module] = item.mutation.apply(out[item.module])
    return out
