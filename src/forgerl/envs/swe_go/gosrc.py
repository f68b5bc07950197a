"""Go source through a real parser (tree-sitter-go): functions, which tests call which function,
the mutation operators, the feature stub and the injected slowdowns.

Every edit is a byte-range replacement in one file (`Edit`), found on the syntax tree rather than
by regex, so an operator never fires inside a string or a comment. Offsets are in UTF-8 bytes
(tree-sitter's unit), and files are edited as bytes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from forgerl.errors import ConfigError

COMPARISON_FLIPS = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "=="}
ARITHMETIC_SWAPS = {"+": "-", "-": "+", "*": "/", "/": "*", "%": "*"}
LOGICAL_SWAPS = {"&&": "||", "||": "&&"}
BASIC_TYPES = {"string", "int", "int64", "uint64", "uint", "float64", "bool", "rune", "byte"}


@functools.cache
def _parser() -> Any:
    try:
        import tree_sitter  # heavy: native parser, only needed when handling Go sources
        import tree_sitter_go
    except ImportError as exc:  # pragma: no cover - the swe extra installs both
        raise ConfigError(f"swe-go needs tree-sitter and tree-sitter-go (pip install 'forgerl[swe]'): {exc}") from exc
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_go.language()))


def parse(source: str) -> Any:
    return _parser().parse(source.encode("utf-8"))


def has_errors(source: str) -> bool:
    return bool(parse(source).root_node.has_error)


def _text(node: Any) -> str:
    return node.text.decode("utf-8")


@dataclass(frozen=True)
class Edit:
    """Replace bytes [start, end) of `file` (whose original text hashes to the task's sha) by `new`."""

    file: str
    start: int
    end: int
    old: str
    new: str
    operator: str
    description: str
    line: int

    def apply(self, source: str) -> str:
        raw = source.encode("utf-8")
        if raw[self.start : self.end].decode("utf-8") != self.old:
            raise ConfigError(f"{self.file} does not hold the text this edit was made for at bytes {self.start}-{self.end}")
        return (raw[: self.start] + self.new.encode("utf-8") + raw[self.end :]).decode("utf-8")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GoFunction:
    """A function or method declaration: `name` is `F` or `Type.M`; `call_name` what a call site
    names (`F` or `M`)."""

    file: str
    name: str
    call_name: str
    start: int
    end: int
    body_start: int
    body_end: int
    params: tuple[tuple[str, str], ...]  # (name, type text)
    results: str
    exported: bool
    is_method: bool


def functions(file: str, source: str) -> list[GoFunction]:
    found = []
    for node in parse(source).root_node.children:
        if node.type not in ("function_declaration", "method_declaration"):
            continue
        body = node.child_by_field_name("body")
        name = _text(node.child_by_field_name("name"))
        if body is None:
            continue
        receiver = node.child_by_field_name("receiver")
        full = name
        if receiver is not None:
            rtype = _text(receiver).strip("()").split()[-1].lstrip("*")
            full = f"{rtype}.{name}"
        params: list[tuple[str, str]] = []
        plist = node.child_by_field_name("parameters")
        for p in plist.named_children if plist is not None else ():
            ptype = p.child_by_field_name("type")
            names = [_text(c) for c in p.named_children if c.type == "identifier"]
            if p.type != "parameter_declaration" or ptype is None:
                params.append(("...", _text(p)))
                continue
            for n in names or ["_"]:
                params.append((n, _text(ptype)))
        result = node.child_by_field_name("result")
        found.append(GoFunction(
            file=file, name=full, call_name=name, start=node.start_byte, end=node.end_byte,
            body_start=body.start_byte, body_end=body.end_byte, params=tuple(params),
            results=_text(result) if result is not None else "", exported=name[:1].isupper(),
            is_method=receiver is not None,
        ))  # fmt: skip
    return found


def function_source(source: str, fn: GoFunction) -> str:
    return source.encode("utf-8")[fn.start : fn.end].decode("utf-8")


# --- tests and what they call ----------------------------------------------------------------


def _called_names(node: Any) -> set[str]:
    names: set[str] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if n.type == "call_expression":
            fn = n.child_by_field_name("function")
            if fn is not None and fn.type == "identifier":
                names.add(_text(fn))
            elif fn is not None and fn.type == "selector_expression":
                names.add(_text(fn.child_by_field_name("field")))
        elif n.type in ("identifier", "type_identifier"):
            names.add(_text(n))  # a function passed as a value (table tests: {"Comma", Comma, ...})
        stack.extend(n.children)
    return names


def test_calls(test_sources: dict[str, str]) -> dict[str, set[str]]:
    """{TestXxx: names it calls}, following helpers defined in the test files (transitively)."""
    direct: dict[str, set[str]] = {}
    tests: list[str] = []
    for source in test_sources.values():
        for node in parse(source).root_node.children:
            if node.type != "function_declaration":
                continue
            name = _text(node.child_by_field_name("name"))
            direct[name] = _called_names(node.child_by_field_name("body"))
            params = _text(node.child_by_field_name("parameters"))
            if name.startswith("Test") and "*testing.T" in params and not name.startswith("TestMain"):
                tests.append(name)
    closure: dict[str, set[str]] = {}
    for test in tests:
        seen, todo = set(), [test]
        while todo:
            current = todo.pop()
            for called in direct.get(current, ()):
                if called not in seen:
                    seen.add(called)
                    if called in direct:
                        todo.append(called)
        closure[test] = seen
    return dict(sorted(closure.items()))


def tests_of(fn: GoFunction, calls: dict[str, set[str]]) -> list[str]:
    return [t for t, names in calls.items() if fn.call_name in names]


# --- mutation operators ----------------------------------------------------------------------


def _walk(node: Any) -> Iterator[Any]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def mutations(file: str, source: str, fn: GoFunction) -> list[Edit]:
    """Every seeded operator's candidate sites inside `fn`'s body."""
    raw = source.encode("utf-8")
    root = parse(source).root_node
    body = root.descendant_for_byte_range(fn.body_start, fn.body_end)
    while body is not None and not (body.start_byte == fn.body_start and body.end_byte == fn.body_end):
        body = body.parent
    if body is None:
        return []
    edits: list[Edit] = []

    def op_edit(node: Any, new: str, operator: str, description: str) -> None:
        old = raw[node.start_byte : node.end_byte].decode("utf-8")
        edits.append(Edit(file, node.start_byte, node.end_byte, old, new, operator, description, node.start_point[0] + 1))

    for node in _walk(body):
        if node.type == "binary_expression":
            op = node.child_by_field_name("operator")
            sym = _text(op)
            if sym in COMPARISON_FLIPS:
                op_edit(op, COMPARISON_FLIPS[sym], "comparison_flip", f"`{sym}` -> `{COMPARISON_FLIPS[sym]}`")
            elif sym in ARITHMETIC_SWAPS:
                op_edit(op, ARITHMETIC_SWAPS[sym], "arithmetic_swap", f"`{sym}` -> `{ARITHMETIC_SWAPS[sym]}`")
            elif sym in LOGICAL_SWAPS:
                op_edit(op, LOGICAL_SWAPS[sym], "logical_swap", f"`{sym}` -> `{LOGICAL_SWAPS[sym]}`")
        elif node.type == "int_literal" and _text(node).isdigit() and node.parent.type != "index_expression":
            value = int(_text(node))
            new = value + 1 if value in (0, 1) or value % 2 else value - 1
            op_edit(node, str(new), "off_by_one", f"literal {value} -> {new}")
        elif node.type == "if_statement":
            cond = node.child_by_field_name("condition")
            if cond is not None:
                op_edit(cond, f"!({_text(cond)})", "negate_condition", f"condition `{_text(cond)[:60]}` negated")
            cons, alt = node.child_by_field_name("consequence"), node.child_by_field_name("alternative")
            if cons is not None and alt is not None and alt.type == "block":
                start, end = cons.start_byte, alt.end_byte
                old = raw[start:end].decode("utf-8")
                new = _text(alt) + " else " + _text(cons)
                edits.append(Edit(file, start, end, old, new, "swap_branches", "if/else branches swapped",
                                  cons.start_point[0] + 1))
        elif node.type in ("expression_statement", "assignment_statement", "inc_statement", "dec_statement"):
            if node.parent is not None and node.parent.type in ("statement_list", "block"):
                op_edit(node, "", "remove_statement", f"statement `{_text(node)[:60]}` removed")
    return edits


# --- the feature stub and the slowdowns ------------------------------------------------------


def stub_body(source: str, fn: GoFunction) -> Edit:
    """The function's body replaced by `panic("not implemented")` (a terminating statement, so it
    compiles whatever the results)."""
    raw = source.encode("utf-8")
    old = raw[fn.body_start : fn.body_end].decode("utf-8")
    new = '{\n\tpanic("not implemented")\n}'
    line = raw[: fn.body_start].count(b"\n") + 1
    return Edit(fn.file, fn.body_start, fn.body_end, old, new, "feature_stub", f"{fn.name} body removed", line)


def benchable(fn: GoFunction) -> bool:
    """A top-level exported function of basic-typed parameters, one of them a string: a benchmark
    program can call it with generated inputs."""
    return (fn.exported and not fn.is_method and bool(fn.params) and fn.results != ""
            and all(t in BASIC_TYPES for _, t in fn.params) and any(t == "string" for _, t in fn.params)
            and not fn.file.endswith("_test.go"))


SLOWDOWNS = {
    "quadratic_scan": (
        "\n\t// count repeated characters first\n\trepeats := 0\n\tfor i := 0; i < len({s}); i++ {{\n"
        "\t\tfor j := 0; j < len({s}); j++ {{\n\t\t\tif i != j && {s}[i] == {s}[j] {{\n\t\t\t\trepeats++\n"
        "\t\t\t}}\n\t\t}}\n\t}}\n\tif repeats < 0 {{\n\t\tpanic(\"negative count\")\n\t}}\n"
    ),
    "recomputed_copy": (
        "\n\t// normalise the input byte by byte\n\tnormalised := \"\"\n\tfor i := 0; i < len({s}); i++ {{\n"
        "\t\tnormalised = normalised + {s}[i:i+1]\n\t}}\n\t{s} = normalised\n"
    ),
}
"""Injected slowdowns, each quadratic in the length of a string parameter `{s}`: a pointless pair
scan, and a copy rebuilt by repeated concatenation (each `+` copies the whole prefix)."""


def slowdown(source: str, fn: GoFunction, kind: str) -> Edit:
    param = next(n for n, t in fn.params if t == "string")
    raw = source.encode("utf-8")
    at = fn.body_start + 1  # just after the opening brace
    line = raw[:at].count(b"\n") + 1
    return Edit(fn.file, at, at, "", SLOWDOWNS[kind].format(s=param).rstrip("\n"), kind,
                f"{kind.replace('_', ' ')} on `{param}` at the start of {fn.name}", line)


# --- a standalone test file (the write-test gold) --------------------------------------------


def _decl_names(node: Any) -> list[str]:
    if node.type in ("function_declaration",):
        return [_text(node.child_by_field_name("name"))]
    if node.type == "method_declaration":
        receiver = _text(node.child_by_field_name("receiver")).strip("()").split()[-1].lstrip("*")
        return [f"{receiver}.{_text(node.child_by_field_name('name'))}"]
    names = []
    for spec in _walk(node):
        if spec.type in ("type_spec", "var_spec", "const_spec"):
            names += [_text(c) for c in spec.children_by_field_name("name")]
    return names


def standalone_test(test_sources: dict[str, str], tests: list[str]) -> str:
    """One test file holding `tests` and every test-file declaration they need (helpers, tables,
    types and their methods), with only the imports that are used: the write-test gold."""
    decls: dict[str, tuple[str, str, int]] = {}  # name -> (file, source, start byte)
    clause: dict[str, str] = {}
    imports: dict[str, dict[str, str]] = {}  # file -> {bound name: import spec text}
    home = ""
    for file, source in sorted(test_sources.items()):
        root = parse(source).root_node
        for node in root.children:
            if node.type == "package_clause":
                clause[file] = _text(node)
            elif node.type == "import_declaration":
                for spec in _walk(node):
                    if spec.type == "import_spec":
                        path = _text(spec.child_by_field_name("path")).strip('"')
                        alias = spec.child_by_field_name("name")
                        bound = _text(alias) if alias is not None else path.rsplit("/", 1)[-1].replace("go-", "")
                        imports.setdefault(file, {})[bound] = _text(spec)
            elif node.type in ("function_declaration", "method_declaration", "type_declaration", "var_declaration",
                               "const_declaration"):
                for name in _decl_names(node):
                    decls.setdefault(name, (file, _text(node), node.start_byte))
                    if name == tests[0]:
                        home = file
    if not home:
        raise ConfigError(f"test {tests[0]} is not in the test files")
    same = {f for f in clause if clause[f] == clause[home]}
    other_tests = set(test_calls(test_sources)) - set(tests)  # a helper type may be called TestStruct
    keep: dict[str, tuple[str, int, str]] = {}  # name -> (file, start byte, source)
    todo = list(tests)
    while todo:
        name = todo.pop()
        if name in keep or name not in decls or decls[name][0] not in same:
            continue
        keep[name] = (decls[name][0], decls[name][2], decls[name][1])
        if "." not in name:  # a type brings its methods
            todo += [m for m in decls if m.startswith(name + ".")]
        used = _called_names(parse("package x\n" + decls[name][1]).root_node)
        todo += sorted(u for u in used if u in decls and (u not in other_tests))
    # in the test files' own order, not the (set-ordered, so hash-seeded) order they were reached in
    body = "\n\n".join(dict.fromkeys(text for _file, _start, text in sorted(keep.values())))
    used_names = _called_names(parse("package x\n" + body).root_node) | _selector_operands(body)
    specs = sorted({spec for f in same for bound, spec in imports.get(f, {}).items() if bound in used_names})
    header = clause[home] + "\n\nimport (\n" + "".join(f"\t{s}\n" for s in specs) + ")\n\n"
    return header + body + "\n"


def _selector_operands(source: str) -> set[str]:
    found = set()
    for node in _walk(parse("package x\n" + source).root_node):
        if node.type in ("selector_expression", "qualified_type"):
            first = node.children[0] if node.children else None
            if first is not None and first.type in ("identifier", "package_identifier"):
                found.add(_text(first))
    return found
