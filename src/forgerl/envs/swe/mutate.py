"""Bug injection by AST mutation (M2_NOTES §5: SWE data augmentation by bug injection).

Each operator is a small function that looks at one AST node and proposes source *text* edits:
the tree says where a mutation makes sense, the edit touches only the characters it must, so the
rest of the file (comments, formatting) stays byte-identical and the gold fix is the exact inverse
edit. A `Mutation` is stored as a line hunk (original lines -> buggy lines) so it can be applied,
reverted and shown to the edit tool without re-running any AST code.

Operators: negate_comparison, shift_boundary, off_by_one, swap_arithmetic, swap_boolean,
drop_else_branch, drop_guard, swap_arguments, negate_condition, flip_bool_constant.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from forgerl.errors import ConfigError


@dataclass(frozen=True, order=True)
class TextEdit:
    """Replace source characters [start, end) with `text` (offsets into the decoded source)."""

    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Candidate:
    """One proposed mutation before it is turned into a hunk."""

    operator: str
    edits: tuple[TextEdit, ...]
    description: str  # for the generation report only; never shown to the agent


@dataclass(frozen=True)
class Mutation:
    """A bug as a line hunk: lines [line_start, line_start + n) of the original (1-based) read
    `original`; in the buggy file they read `buggy`. Both include one context line each side."""

    operator: str
    function: str
    line_start: int
    original: str
    buggy: str
    description: str

    def apply(self, source: str) -> str:
        return _replace_hunk(source, self.line_start, self.original, self.buggy)

    def revert(self, buggy_source: str) -> str:
        return _replace_hunk(buggy_source, self.line_start, self.buggy, self.original)

    @property
    def buggy_line_end(self) -> int:
        """Last line (inclusive) of the hunk in the buggy file."""
        return self.line_start + len(self.buggy.splitlines()) - 1

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _replace_hunk(source: str, line_start: int, old: str, new: str) -> str:
    lines = source.splitlines(keepends=True)
    old_lines = old.splitlines(keepends=True)
    got = "".join(lines[line_start - 1 : line_start - 1 + len(old_lines)])
    if got != old:
        raise ConfigError(
            f"hunk does not match the source at line {line_start}: the file is not the version this "
            "mutation was generated from (check the package version pin)"
        )
    return "".join(lines[: line_start - 1]) + new + "".join(lines[line_start - 1 + len(old_lines) :])


# --- source positions ------------------------------------------------------------------------


class Source:
    """A module's text with AST-position -> character-offset conversion (AST columns are UTF-8
    byte offsets, which differ from str indices on lines with non-ASCII text)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self._line_starts = [0]
        for line in self.lines:
            self._line_starts.append(self._line_starts[-1] + len(line))
        self.tree = ast.parse(text)

    def offset(self, lineno: int, col_byte: int) -> int:
        line = self.lines[lineno - 1]
        return self._line_starts[lineno - 1] + len(line.encode("utf-8")[:col_byte].decode("utf-8"))

    def start(self, node: ast.AST) -> int:
        return self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]

    def end(self, node: ast.AST) -> int:
        return self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]

    def segment(self, node: ast.AST) -> str:
        return self.text[self.start(node) : self.end(node)]

    def line_of(self, offset: int) -> int:
        """1-based line number holding character `offset`."""
        lo, hi = 0, len(self.lines)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._line_starts[mid + 1] <= offset:
                lo = mid + 1
            else:
                hi = mid
        return lo + 1

    def line_span(self, first: int, last: int) -> tuple[int, int]:
        """Character span of whole lines first..last (1-based, inclusive)."""
        return self._line_starts[first - 1], self._line_starts[last]


def _edit_in_gap(src: Source, start: int, end: int, pattern: str, replacement: str) -> TextEdit | None:
    """Find the operator token `pattern` (a regex) in text[start:end] -- the gap between two
    operands -- and propose replacing it. None when it is not there exactly once."""
    gap = src.text[start:end]
    if "#" in gap:  # a comment between operands: too unusual to edit safely
        return None
    found = list(re.finditer(pattern, gap))
    if len(found) != 1:
        return None
    m = found[0]
    return TextEdit(start + m.start(), start + m.end(), replacement)


# --- operators -------------------------------------------------------------------------------

Operator = Callable[[ast.AST, Source], Iterator[Candidate]]

_CMP_TOKEN: dict[type[ast.cmpop], str] = {
    ast.Eq: r"==",
    ast.NotEq: r"!=",
    ast.Lt: r"(?<![<>=!])<(?![<=])",
    ast.LtE: r"<=",
    ast.Gt: r"(?<![<>=!-])>(?![>=])",
    ast.GtE: r">=",
    ast.In: r"(?<!not)\bin\b",
    ast.NotIn: r"\bnot\s+in\b",
    ast.Is: r"\bis\b(?!\s+not\b)",
    ast.IsNot: r"\bis\s+not\b",
}
_NEGATED_CMP = {
    ast.Eq: "!=", ast.NotEq: "==", ast.Lt: ">=", ast.GtE: "<", ast.Gt: "<=", ast.LtE: ">",
    ast.In: "not in", ast.NotIn: "in", ast.Is: "is not", ast.IsNot: "is",
}  # fmt: skip
_SHIFTED_CMP = {ast.Lt: "<=", ast.LtE: "<", ast.Gt: ">=", ast.GtE: ">"}


def _compare_edit(node: ast.AST, src: Source, table: dict[type[ast.cmpop], str], name: str) -> Iterator[Candidate]:
    if not isinstance(node, ast.Compare) or len(node.ops) != 1 or type(node.ops[0]) not in table:
        return
    op = type(node.ops[0])
    edit = _edit_in_gap(src, src.end(node.left), src.start(node.comparators[0]), _CMP_TOKEN[op], table[op])
    if edit:
        old = src.text[edit.start : edit.end]
        yield Candidate(name, (edit,), f"{old!r} -> {table[op]!r}")


def negate_comparison(node: ast.AST, src: Source) -> Iterator[Candidate]:
    """`a < b` -> `a >= b`, `==` <-> `!=`, `in` <-> `not in`, `is` <-> `is not`."""
    yield from _compare_edit(node, src, _NEGATED_CMP, "negate_comparison")


def shift_boundary(node: ast.AST, src: Source) -> Iterator[Candidate]:
    """`<` <-> `<=`, `>` <-> `>=`: the classic boundary (off-by-one in a comparison) bug."""
    yield from _compare_edit(node, src, _SHIFTED_CMP, "shift_boundary")


def off_by_one(node: ast.AST, src: Source) -> Iterator[Candidate]:
    """An integer literal n -> n + 1 and n - 1 (indices, slice bounds, counts, range limits)."""
    if not (isinstance(node, ast.Constant) and type(node.value) is int):
        return
    text = src.segment(node)
    if not text.isdigit():  # hex, underscores, etc.: leave alone
        return
    for new in (node.value + 1, node.value - 1):
        if new >= 0:
            yield Candidate("off_by_one", (TextEdit(src.start(node), src.end(node), str(new)),), f"{text} -> {new}")


_ARITH_TOKEN: dict[type[ast.operator], tuple[str, str]] = {
    # op: (regex for the token in the gap, replacement token)
    ast.Add: (r"(?<![+*/=<>!])\+(?!=)", "-"),
    ast.Sub: (r"(?<![-*/=<>!])-(?![=>])", "+"),
    ast.Mult: (r"(?<!\*)\*(?![*=])", "//"),
    ast.FloorDiv: (r"//(?!=)", "*"),
    ast.Div: (r"(?<!/)/(?![/=])", "*"),
    ast.Mod: (r"%(?!=)", "//"),
}


def swap_arithmetic(node: ast.AST, src: Source) -> Iterator[Candidate]:
    """`+` <-> `-`, `*` <-> `//`, `/` -> `*`, `%` -> `//`, also in augmented assignments."""
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH_TOKEN:
        if isinstance(node.left, ast.Constant) and isinstance(node.left.value, str) and isinstance(node.op, ast.Mod):
            return  # "%s" % x is formatting, not arithmetic
        pattern, new = _ARITH_TOKEN[type(node.op)]
        edit = _edit_in_gap(src, src.end(node.left), src.start(node.right), pattern, new)
        if edit:
            yield Candidate("swap_arithmetic", (edit,), f"{src.text[edit.start:edit.end]!r} -> {new!r}")
    elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Add | ast.Sub):
        old, new = ("+=", "-=") if isinstance(node.op, ast.Add) else ("-=", "+=")
        edit = _edit_in_gap(src, src.end(node.target), src.start(node.value), re.escape(old), new)
        if edit:
            yield Candidate("swap_arithmetic", (edit,), f"{old!r} -> {new!r}")


def swap_boolean(node: ast.AST, src: Source) -> Iterator[Candidate]:
    """`a and b` <-> `a or b` (two-operand boolean expressions only)."""
    if not isinstance(node, ast.BoolOp) or len(node.values) != 2:
        return
    old, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
    edit = _edit_in_gap(src, src.end(node.values[0]), src.start(node.values[1]), rf"\b{old}\b", new)
    if edit:
        yield Candidate("swap_boolean", (edit,), f"{old!r} -> {new!r}")


def _owns_whole_lines(src: Source, first_line: int, start: int, end: int, last_line: int) -> bool:
    """True when nothing but whitespace/comments shares the lines of [start, end)."""
    line_start, line_end = src.line_span(first_line, last_line)
    before, after = src.text[line_start:start], src.text[end:line_end]
    return not before.strip() and (not after.strip() or after.strip().startswith("#"))


def drop_else_branch(node: ast.AST, src: Source) -> Iterator[Candidate]:
    """Delete the `else:` / `elif ...:` part of an if statement (a forgotten case)."""
    if not isinstance(node, ast.If) or not node.orelse:
        return
    body_last = node.body[-1].end_lineno
    first = node.orelse[0]
    if isinstance(first, ast.If) and len(node.orelse) == 1 and src.lines[first.lineno - 1].lstrip().startswith("elif"):
        kw_line = first.lineno
    else:
        kw_line = next(
            (n for n in range(body_last + 1, first.lineno + 1) if src.lines[n - 1].lstrip().startswith("else")), None
        )
    last = node.orelse[-1].end_lineno
    if kw_line is None or not _owns_whole_lines(src, kw_line, src.line_span(kw_line, kw_line)[0], src.end(node), last):
        return
    start, end = src.line_span(kw_line, last)
    yield Candidate("drop_else_branch", (TextEdit(start, end, ""),), f"delete lines {kw_line}-{last}")


def drop_guard(node: ast.AST, src: Source) -> Iterator[Candidate]:
    """Delete an `if` statement without else that is not alone in its block (a missing check)."""
    for field in ("body", "orelse"):
        block = getattr(node, field, None)
        if not isinstance(block, list) or len(block) < 2:
            continue
        for stmt in block:
            if isinstance(stmt, ast.If) and not stmt.orelse:
                if not _owns_whole_lines(src, stmt.lineno, src.start(stmt), src.end(stmt), stmt.end_lineno):
                    continue
                start, end = src.line_span(stmt.lineno, stmt.end_lineno)
                desc = f"delete `if {ast.unparse(stmt.test)[:40]}` (lines {stmt.lineno}-{stmt.end_lineno})"
                yield Candidate("drop_guard", (TextEdit(start, end, ""),), desc)


def swap_arguments(node: ast.AST, src: Source) -> Iterator[Candidate]:
    """`f(a, b, ...)` -> `f(b, a, ...)` when the first two positional arguments differ."""
    if not isinstance(node, ast.Call) or len(node.args) < 2:
        return
    a, b = node.args[0], node.args[1]
    if isinstance(a, ast.Starred) or isinstance(b, ast.Starred):
        return
    ta, tb = src.segment(a), src.segment(b)
    if ta == tb:
        return
    edits = (TextEdit(src.start(a), src.end(a), tb), TextEdit(src.start(b), src.end(b), ta))
    yield Candidate("swap_arguments", edits, f"swap {ta[:30]!r} and {tb[:30]!r}")


def negate_condition(node: ast.AST, src: Source) -> Iterator[Candidate]:
    """`if c:` -> `if not (c):`; `not c` -> `c` (also in while loops and conditional expressions)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        edit = TextEdit(src.start(node), src.end(node), src.segment(node.operand))
        yield Candidate("negate_condition", (edit,), "drop `not`")
    elif isinstance(node, ast.If | ast.While | ast.IfExp):
        test = node.test
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return  # the UnaryOp case above covers it
        text = src.segment(test)
        if "\n" in text:
            return
        yield Candidate("negate_condition", (TextEdit(src.start(test), src.end(test), f"not ({text})"),), "add `not`")


def flip_bool_constant(node: ast.AST, src: Source) -> Iterator[Candidate]:
    """`True` <-> `False` literals (wrong default, wrong flag, wrong return value)."""
    if isinstance(node, ast.Constant) and type(node.value) is bool:
        new = str(not node.value)
        yield Candidate("flip_bool_constant", (TextEdit(src.start(node), src.end(node), new),), f"{node.value} -> {new}")


OPERATORS: dict[str, Operator] = {
    op.__name__: op
    for op in (
        negate_comparison,
        shift_boundary,
        off_by_one,
        swap_arithmetic,
        swap_boolean,
        drop_else_branch,
        drop_guard,
        swap_arguments,
        negate_condition,
        flip_bool_constant,
    )
}


# --- finding functions and building mutations ------------------------------------------------


def find_function(tree: ast.Module, qualname: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    """`name` (module level) or `Class.method`."""
    scope: list[ast.stmt] = tree.body
    parts = qualname.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        kinds = (ast.FunctionDef, ast.AsyncFunctionDef) if last else (ast.ClassDef,)
        found = [n for n in scope if isinstance(n, kinds) and n.name == part]
        if not found:
            raise ConfigError(f"no {'function' if last else 'class'} {part!r} (looking for {qualname!r})")
        node = found[-1]  # the last definition wins, as at import time
        if last:
            return node  # type: ignore[return-value]
        scope = node.body  # type: ignore[attr-defined]
    raise AssertionError("unreachable")


def _docstring_node(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST | None:
    first = fn.body[0] if fn.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first
    return None


def _function_body_nodes(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.AST]:
    """Nodes of the function body (not its signature, decorators or docstring), in source order."""
    doc = _docstring_node(fn)
    yield fn  # itself (not walked): drop_guard looks at its body block
    for stmt in fn.body:
        if stmt is doc:
            continue
        yield from ast.walk(stmt)


def candidates_for_function(src: Source, qualname: str, operators: dict[str, Operator] | None = None) -> list[Candidate]:
    """Every mutation the operators propose inside one function, in a stable order."""
    fn = find_function(src.tree, qualname)
    found: list[Candidate] = []
    for node in _function_body_nodes(fn):
        if isinstance(node, ast.JoinedStr):  # f-string internals have unreliable positions
            continue
        for op in (operators or OPERATORS).values():
            found.extend(op(node, src))
    unique = {(c.operator, c.edits): c for c in found}
    return sorted(unique.values(), key=lambda c: (c.edits[0].start, c.operator, c.edits))


def to_mutation(src: Source, qualname: str, candidate: Candidate) -> Mutation:
    """Apply the candidate's edits and express the result as a line hunk with one context line
    each side (so a hunk is never empty, even for a deleted branch)."""
    edits = sorted(candidate.edits, key=lambda e: e.start)
    for a, b in zip(edits, edits[1:], strict=False):
        if a.end > b.start:
            raise ConfigError(f"overlapping edits in candidate {candidate}")
    first = max(1, src.line_of(edits[0].start) - 1)
    last_edit_line = src.line_of(max(edits[-1].end - 1, edits[-1].start))
    last = min(len(src.lines), last_edit_line + 1)
    span_start, span_end = src.line_span(first, last)
    original = src.text[span_start:span_end]
    pieces, cursor = [], span_start
    for e in edits:
        pieces.append(src.text[cursor : e.start] + e.text)
        cursor = e.end
    pieces.append(src.text[cursor:span_end])
    return Mutation(candidate.operator, qualname, first, original, "".join(pieces), candidate.description)


def mutate_source(text: str, qualname: str, candidate: Candidate) -> tuple[Mutation, str]:
    """Convenience for tests and the pipeline: the mutation and the whole buggy source."""
    src = Source(text)
    mutation = to_mutation(src, qualname, candidate)
    return mutation, mutation.apply(text)
