"""A tiny spreadsheet: cells holding numbers, text or formulas, recomputed from their raw contents.

Why hand-written: the cowork verifier must recompute the agent's sheet (M2_NOTES §5: "spreadsheet
cells matched after recalculation"), and the libraries that evaluate Excel formulas are large and
pull in numpy/openpyxl for what is here ~200 lines. The formula language is the part of Excel a
budget sheet needs: numbers, cell references (`B7`, `$B$7`), ranges inside functions (`B2:B6`),
`+ - * /`, parentheses, unary minus and SUM / MIN / MAX / AVERAGE / ROUND / ABS.

Semantics follow Excel where it matters: an empty cell is 0 in arithmetic; SUM/MIN/MAX/AVERAGE skip
text and empty cells in ranges; text used in arithmetic is an error (Excel's #VALUE!). A formula is
model output, so it is parsed into a small tree (never `eval`-ed), length-limited, and every failure
is a `FormulaError` whose message says what was wrong. Cycles are found by a depth-first walk and
reported with the path (`A1 -> B1 -> A1`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from forgerl.errors import ToolError

MAX_COLUMNS = 26  # A..Z
MAX_ROWS = 200
MAX_FORMULA_CHARS = 200
MAX_TEXT_CHARS = 200
MAX_ROUND_DIGITS = 15  # a double holds ~15 significant digits; 10**digits beyond that only costs time
MAX_RECOMPUTE_READS = 200_000
"""Cell reads (ranges expanded) one recalculation may make: a budget sheet needs a few hundred; a
sheet of full-sheet ranges in every cell would take minutes, so it is refused with a FormulaError."""

CellValue = float | str | None  # None: empty
RawCell = float | str  # a number, a text, or a formula (a string starting with "=")

_CELL_RE = re.compile(r"^\$?([A-Za-z]{1,2})\$?([0-9]{1,4})$")
_TOKEN_RE = re.compile(
    r"\s*(?:"
    r"(?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"
    r"|(?P<range>\$?[A-Za-z]{1,2}\$?\d{1,4}\s*:\s*\$?[A-Za-z]{1,2}\$?\d{1,4})"
    r"|(?P<func>[A-Za-z]+)\s*\("
    r"|(?P<cell>\$?[A-Za-z]{1,2}\$?\d{1,4})"
    r"|(?P<op>[-+*/(),])"
    r")"
)


class FormulaError(ToolError):
    """A formula that cannot be parsed or evaluated (bad syntax, #VALUE!, #DIV/0!, unknown name)."""


class CycleError(FormulaError):
    """A formula that refers back to itself, directly or through other cells."""


class CellRefError(ToolError):
    """A cell address that is malformed or outside the sheet."""


def parse_cell(ref: str) -> tuple[int, int]:
    """'B7' -> (column index 0-based, row 1-based); raises CellRefError with what a valid ref is."""
    match = _CELL_RE.match(ref.strip()) if isinstance(ref, str) else None
    if match is None:
        raise CellRefError(f"bad cell reference {ref!r}: write a column letter and a row number, e.g. B7")
    letters, row = match.group(1).upper(), int(match.group(2))
    column = 0
    for letter in letters:
        column = column * 26 + (ord(letter) - ord("A") + 1)
    column -= 1
    if column >= MAX_COLUMNS or not 1 <= row <= MAX_ROWS:
        raise CellRefError(f"cell {ref!r} is outside the sheet (columns A-Z, rows 1-{MAX_ROWS})")
    return column, row


def cell_name(column: int, row: int) -> str:
    return f"{chr(ord('A') + column)}{row}"


def normalize_cell(ref: str) -> str:
    """The canonical spelling of a reference: '$b$7' -> 'B7'."""
    return cell_name(*parse_cell(ref))


def expand_range(start: str, end: str) -> list[str]:
    """All cells of the rectangle between two corners, row by row."""
    (c1, r1), (c2, r2) = parse_cell(start), parse_cell(end)
    return [cell_name(c, r) for r in range(min(r1, r2), max(r1, r2) + 1) for c in range(min(c1, c2), max(c1, c2) + 1)]


# --- parsing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Ref:
    cell: str


@dataclass(frozen=True)
class Range:
    cells: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Node, ...]


Node = Num | Ref | Range | Unary | Binary | Call


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN_RE.match(text, position)
        if match is None or match.end() == position:
            raise FormulaError(f"unexpected character {text[position:].strip()[:1]!r} at position {position + 1} in formula")
        kind = match.lastgroup or "op"
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over: expr := term (+|- term)*; term := unary (*|/ unary)*;
    unary := (-|+) unary | primary; primary := number | cell | FUNC(args) | (expr)."""

    def __init__(self, text: str) -> None:
        self.tokens, self.i = _tokens(text), 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise FormulaError("the formula ends too early (an operand or ')' is missing)")
        self.i += 1
        return token

    def parse(self) -> Node:
        if not self.tokens:
            raise FormulaError("empty formula: write something after '=', e.g. =SUM(B2:B6)")
        node = self.expr()
        if self.peek() is not None:
            raise FormulaError(f"unexpected {self.peek()[1]!r} after a complete expression")  # type: ignore[index]
        return node

    def expr(self) -> Node:
        node = self.term()
        while self.peek() in (("op", "+"), ("op", "-")):
            node = Binary(self.take()[1], node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.peek() in (("op", "*"), ("op", "/")):
            node = Binary(self.take()[1], node, self.unary())
        return node

    def unary(self) -> Node:
        if self.peek() in (("op", "-"), ("op", "+")):
            return Unary(self.take()[1], self.unary())
        return self.primary()

    def primary(self) -> Node:
        kind, text = self.take()
        if kind == "number":
            number = float(text)
            if not math.isfinite(number):
                raise FormulaError(f"the number {text} is too large")
            return Num(number)
        if kind == "cell":
            return Ref(normalize_cell(text))
        if kind == "range":
            raise FormulaError(f"a range like {text} can only be used inside a function, e.g. SUM({text})")
        if kind == "func":
            return self.call(text.upper())
        if text == "(":
            node = self.expr()
            if self.take() != ("op", ")"):
                raise FormulaError("missing ')'")
            return node
        raise FormulaError(f"unexpected {text!r} where a number, cell or function was expected")

    def call(self, name: str) -> Node:
        if name not in FUNCTIONS:
            raise FormulaError(f"unknown function {name}; available: {', '.join(sorted(FUNCTIONS))}")
        args: list[Node] = []
        if self.peek() == ("op", ")"):
            self.take()
            return Call(name, ())
        while True:
            token = self.peek()
            if token is not None and token[0] == "range":
                self.take()
                start, end = (part.strip() for part in token[1].split(":"))
                args.append(Range(tuple(expand_range(start, end)), token[1]))
            else:
                args.append(self.expr())
            kind, text = self.take()
            if text == ")":
                return Call(name, tuple(args))
            if text != ",":
                raise FormulaError(f"expected ',' or ')' in the arguments of {name}, found {text!r}")


def parse_formula(formula: str) -> Node:
    """Parse '=...' into a tree; raises FormulaError saying what is wrong."""
    if len(formula) > MAX_FORMULA_CHARS:
        raise FormulaError(f"formula is longer than {MAX_FORMULA_CHARS} characters")
    if not formula.startswith("="):
        raise FormulaError(f"a formula starts with '=', got {formula[:20]!r}")
    return _Parser(formula[1:]).parse()


def references(node: Node) -> Iterator[str]:
    """Every cell a formula reads (ranges expanded)."""
    if isinstance(node, Ref):
        yield node.cell
    elif isinstance(node, Range):
        yield from node.cells
    elif isinstance(node, Unary):
        yield from references(node.operand)
    elif isinstance(node, Binary):
        yield from references(node.left)
        yield from references(node.right)
    elif isinstance(node, Call):
        for arg in node.args:
            yield from references(arg)


# --- evaluation --------------------------------------------------------------------------------


def _numbers_in_range(values: list[CellValue]) -> list[float]:
    """Excel's aggregate rule: text and empty cells inside a range are skipped, not errors."""
    return [v for v in values if isinstance(v, float)]


def _round(values: list[float], name: str) -> float:
    if len(values) not in (1, 2):
        raise FormulaError(f"ROUND takes a number and optionally a number of digits, got {len(values)} arguments")
    digits = values[1] if len(values) == 2 else 0.0
    if not -MAX_ROUND_DIGITS <= digits <= MAX_ROUND_DIGITS:
        raise FormulaError(f"ROUND's number of digits must be between -{MAX_ROUND_DIGITS} and {MAX_ROUND_DIGITS}, got {digits:g}")
    digits = int(digits)
    scaled = abs(values[0]) * 10**digits
    rounded = math.floor(scaled + 0.5 + 1e-9) / 10**digits  # Excel rounds half away from zero
    return math.copysign(rounded, values[0])


def _average(values: list[float], name: str) -> float:
    if not values:
        raise FormulaError("AVERAGE of no numbers (#DIV/0!)")
    return sum(values) / len(values)


def _one(fn: Callable[[float], float]) -> Callable[[list[float], str], float]:
    def apply(values: list[float], name: str) -> float:
        if len(values) != 1:
            raise FormulaError(f"{name} takes exactly one argument, got {len(values)}")
        return fn(values[0])

    return apply


FUNCTIONS: dict[str, Callable[[list[float], str], float]] = {
    "SUM": lambda values, name: math.fsum(values),
    "MIN": lambda values, name: min(values, default=0.0),
    "MAX": lambda values, name: max(values, default=0.0),
    "AVERAGE": _average,
    "ROUND": _round,
    "ABS": _one(abs),
}


def _located(error: FormulaError, ref: str, raw: str) -> FormulaError:
    """The error with the cell and formula it came from prefixed, once."""
    if isinstance(error, CycleError) or getattr(error, "located", False):
        return error
    located = type(error)(f"in {ref} ({raw}): {error}")
    located.located = True  # type: ignore[attr-defined]
    return located


class Sheet:
    """Raw cell contents plus recomputation. Values are never cached across writes: `value()`
    evaluates from the raw contents, so what the verifier sees is always a fresh recalculation."""

    def __init__(self, cells: Mapping[str, RawCell] | None = None) -> None:
        self.cells: dict[str, RawCell] = {}
        for ref, raw in (cells or {}).items():
            self.cells[normalize_cell(ref)] = raw

    def raw(self, ref: str) -> RawCell | None:
        return self.cells.get(normalize_cell(ref))

    def write(self, ref: str, raw: RawCell | None) -> None:
        """Set a cell (None clears it), then recompute the whole sheet; on any error the previous
        content is restored and the error raised, so the sheet never holds a broken formula."""
        ref = normalize_cell(ref)
        previous = self.cells.get(ref)
        if raw is None:
            self.cells.pop(ref, None)
        else:
            if isinstance(raw, str) and raw.startswith("="):
                parse_formula(raw)  # syntax errors before touching the sheet
            elif isinstance(raw, str) and len(raw) > MAX_TEXT_CHARS:
                raise FormulaError(f"text is longer than {MAX_TEXT_CHARS} characters")
            self.cells[ref] = raw
        try:
            self.evaluate_all(start=ref)
        except FormulaError:
            if previous is None:
                self.cells.pop(ref, None)
            else:
                self.cells[ref] = previous
            raise

    def evaluate_all(self, start: str | None = None) -> dict[str, CellValue]:
        """Every non-empty cell's value, recomputed from scratch (raises on the first error).
        Evaluation begins at `start`, so a cycle is reported from the cell just written."""
        cache: dict[str, CellValue] = {}
        roots = [start, *self.cells] if start in self.cells else list(self.cells)
        for ref in self._dependency_order(roots):
            self._value(ref, cache, [])
        return {ref: cache[ref] for ref in self.cells}

    def value(self, ref: str) -> CellValue:
        cache: dict[str, CellValue] = {}
        for cell in self._dependency_order([normalize_cell(ref)]):
            self._value(cell, cache, [])
        return cache[normalize_cell(ref)]

    def _dependency_order(self, roots: list[str]) -> list[str]:
        """Cells reachable from `roots`, each after every cell it reads, found by an iterative
        depth-first walk: evaluated in this order no formula recurses more than one cell deep, so a
        chain as long as the sheet cannot overflow Python's stack. Raises CycleError with the path,
        and FormulaError when the sheet needs more than MAX_RECOMPUTE_READS reads."""
        order: list[str] = []
        done: set[str] = set()
        budget = [MAX_RECOMPUTE_READS]
        for root in roots:
            if root in done:
                continue
            path, on_path, pending = [root], {root}, [iter(self._reads(root, budget))]
            while path:
                following = next(pending[-1], None)
                if following is None:
                    finished = path.pop()
                    on_path.discard(finished)
                    pending.pop()
                    done.add(finished)
                    order.append(finished)
                elif following in on_path:
                    cycle = " -> ".join([*path[path.index(following) :], following])
                    raise CycleError(f"circular reference: {cycle}; a formula cannot depend on its own cell")
                elif following not in done:
                    path.append(following)
                    on_path.add(following)
                    pending.append(iter(self._reads(following, budget)))
        return order

    def _reads(self, ref: str, budget: list[int]) -> list[str]:
        """The cells `ref`'s formula reads, charged against the recalculation's budget."""
        raw = self.cells.get(ref)
        if not (isinstance(raw, str) and raw.startswith("=")):
            return []
        try:
            reads = list(references(parse_formula(raw)))
        except FormulaError as error:
            raise _located(error, ref, raw) from None
        budget[0] -= len(reads)
        if budget[0] < 0:
            raise FormulaError(
                f"the sheet is too large to recompute: its formulas read more than {MAX_RECOMPUTE_READS} cells "
                "in all; use fewer or smaller ranges (e.g. one SUM cell that others refer to)"
            )
        return reads

    def _value(self, ref: str, cache: dict[str, CellValue], stack: list[str]) -> CellValue:
        if ref in cache:
            return cache[ref]
        if ref in stack:
            cycle = " -> ".join([*stack[stack.index(ref) :], ref])
            raise CycleError(f"circular reference: {cycle}; a formula cannot depend on its own cell")
        raw = self.cells.get(ref)
        if raw is None:
            value: CellValue = None
        elif isinstance(raw, str) and raw.startswith("="):
            stack.append(ref)
            try:
                value = self._evaluate(parse_formula(raw), ref, cache, stack)
            except FormulaError as error:
                raise _located(error, ref, raw) from None
            finally:
                stack.pop()
        elif isinstance(raw, str):
            value = raw
        else:
            value = float(raw)
        cache[ref] = value
        return value

    def _evaluate(self, node: Node, owner: str, cache: dict[str, CellValue], stack: list[str]) -> float:
        if isinstance(node, Num):
            return node.value
        if isinstance(node, Ref):
            value = self._value(node.cell, cache, stack)
            if isinstance(value, str):
                raise FormulaError(f"{node.cell} holds text {value!r}, which is not a number (#VALUE!)")
            return 0.0 if value is None else value
        if isinstance(node, Unary):
            operand = self._evaluate(node.operand, owner, cache, stack)
            return -operand if node.op == "-" else operand
        if isinstance(node, Binary):
            left = self._evaluate(node.left, owner, cache, stack)
            right = self._evaluate(node.right, owner, cache, stack)
            if node.op == "/" and right == 0:
                raise FormulaError("division by zero (#DIV/0!)")
            if node.op == "+":
                result = left + right
            elif node.op == "-":
                result = left - right
            elif node.op == "*":
                result = left * right
            else:
                result = left / right
            if not math.isfinite(result):
                raise FormulaError("the result overflowed")
            return result
        if isinstance(node, Call):
            values: list[float] = []
            for arg in node.args:
                if isinstance(arg, Range):
                    values.extend(_numbers_in_range([self._value(c, cache, stack) for c in arg.cells]))
                else:
                    values.append(self._evaluate(arg, owner, cache, stack))
            result = FUNCTIONS[node.name](values, node.name)
            if not math.isfinite(result):
                raise FormulaError("the result overflowed")
            return result
        raise FormulaError(f"a range ({node.text}) can only be used inside a function")  # bare Range
