"""Slowdown injection for perf tasks: AST transforms that keep a function's results and make it slower.

Like mutate.py's bug operators, each transform looks at the tree to find where it applies and
proposes source *text* edits, so the slow file differs from the original only where it must and the
gold fix is the inverse hunk. The transforms are the classic ways fast code turns slow:
  * set_to_list: a set used for membership becomes a list (`set()` -> `[]`, `.add` -> `.append`);
  * deque_to_list: a deque used as a queue becomes a list (`popleft()` -> `pop(0)`, `appendleft(x)`
    -> `insert(0, x)`);
  * append_to_concat: `acc.append(x)` in a loop becomes `acc = acc + [x]` (a copy per item);
  * membership_in_list: `k in d` for a local dict or set becomes `k in list(d)`;
  * recompute_in_loop: a value computed once before a loop (`n = sorted(xs)`) is recomputed at
    every use inside the loop;
  * drop_cache: a memoising decorator (`lru_cache`, `cache`) is removed.
Whether a slowdown is real, keeps every test passing and is large enough is decided by running it
(perf.py): a transform only proposes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from forgerl.envs.swe.mutate import Candidate, Source, TextEdit, find_function

_QUEUE_METHODS = {"popleft": "pop(0)", "appendleft": "insert(0, {})"}


def _local_names(fn: ast.FunctionDef | ast.AsyncFunctionDef, make: str) -> dict[str, list[ast.Assign]]:
    """Names assigned (only by plain `name = make(...)` statements) a call of `make` in `fn`'s own body."""
    found: dict[str, list[ast.Assign]] = {}
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = node.value
            func = value.func if isinstance(value, ast.Call) else None
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name == make:
                found.setdefault(node.targets[0].id, []).append(node)
    return found


def _method_calls(fn: ast.AST, var: str) -> list[ast.Call]:
    return [n for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and isinstance(n.func.value, ast.Name) and n.func.value.id == var]  # fmt: skip


def _attr_edit(src: Source, call: ast.Call, new: str) -> TextEdit:
    """Replace `.method(args)` of `var.method(args)` with `.new`, `{}` in `new` taking the args' text."""
    func = call.func
    assert isinstance(func, ast.Attribute)
    args = ", ".join(src.segment(a) for a in call.args)
    start = src.end(func.value)
    return TextEdit(start, src.end(call), "." + new.format(args))


def set_to_list(fn: ast.FunctionDef | ast.AsyncFunctionDef, src: Source) -> Iterator[Candidate]:
    for var, assigns in _local_names(fn, "set").items():
        if len(assigns) != 1 or assigns[0].value.keywords or len(assigns[0].value.args) > 1:  # type: ignore[attr-defined]
            continue
        uses = [n for n in ast.walk(fn) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                and n.value.id == var]  # fmt: skip
        if not uses or any(u.attr != "add" for u in uses):
            continue  # only `.add` (called, or bound as `seen_add = seen.add`): a list has `.append`
        call = assigns[0].value
        assert isinstance(call, ast.Call)
        inner = src.segment(call.args[0]) if call.args else ""
        edits = [TextEdit(src.start(call), src.end(call), f"list({inner})" if inner else "[]")]
        edits += [TextEdit(src.end(u.value), src.end(u), ".append") for u in uses]
        yield Candidate("set_to_list", tuple(sorted(edits)), f"set {var!r} -> list")


def deque_to_list(fn: ast.FunctionDef | ast.AsyncFunctionDef, src: Source) -> Iterator[Candidate]:
    for var, assigns in _local_names(fn, "deque").items():
        if any(a.value.keywords or len(a.value.args) > 1 for a in assigns):  # type: ignore[attr-defined]
            continue  # maxlen: a list has no equivalent
        calls = _method_calls(fn, var)
        if not any(c.func.attr in _QUEUE_METHODS for c in calls):  # type: ignore[attr-defined]
            continue
        if any(c.func.attr not in (*_QUEUE_METHODS, "append", "pop", "extend", "clear") for c in calls):  # type: ignore[attr-defined]
            continue
        edits = []
        for a in assigns:
            call = a.value
            assert isinstance(call, ast.Call)
            inner = src.segment(call.args[0]) if call.args else ""
            edits.append(TextEdit(src.start(call), src.end(call), f"list({inner})" if inner else "[]"))
        edits += [_attr_edit(src, c, _QUEUE_METHODS[c.func.attr]) for c in calls if c.func.attr in _QUEUE_METHODS]  # type: ignore[attr-defined]
        yield Candidate("deque_to_list", tuple(sorted(edits)), f"deque {var!r} -> list")


def append_to_concat(fn: ast.FunctionDef | ast.AsyncFunctionDef, src: Source) -> Iterator[Candidate]:
    lists = {n.targets[0].id for n in ast.walk(fn) if isinstance(n, ast.Assign) and len(n.targets) == 1
             and isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.List) and not n.value.elts}  # fmt: skip
    for loop in (n for n in ast.walk(fn) if isinstance(n, ast.For | ast.While)):
        for stmt in ast.walk(loop):
            if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
                continue
            call = stmt.value
            func = call.func
            if (isinstance(func, ast.Attribute) and func.attr == "append" and isinstance(func.value, ast.Name)
                    and func.value.id in lists and len(call.args) == 1 and not call.keywords):  # fmt: skip
                var = func.value.id
                text = f"{var} = {var} + [{src.segment(call.args[0])}]"
                yield Candidate("append_to_concat", (TextEdit(src.start(stmt), src.end(stmt), text),),
                                f"{var}.append -> {var} = {var} + [...]")


def membership_in_list(fn: ast.FunctionDef | ast.AsyncFunctionDef, src: Source) -> Iterator[Candidate]:
    containers = {n.targets[0].id for n in ast.walk(fn) if isinstance(n, ast.Assign) and len(n.targets) == 1
                  and isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.Dict | ast.Set | ast.Call)
                  and (not isinstance(n.value, ast.Call) or isinstance(n.value.func, ast.Name)
                       and n.value.func.id in ("set", "dict", "frozenset", "defaultdict"))}  # fmt: skip
    for node in ast.walk(fn):
        if (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.In | ast.NotIn)
                and isinstance(node.comparators[0], ast.Name) and node.comparators[0].id in containers):  # fmt: skip
            right = node.comparators[0]
            edit = TextEdit(src.start(right), src.end(right), f"list({right.id})")
            yield Candidate("membership_in_list", (edit,), f"`in {right.id}` -> `in list({right.id})`")


_COSTLY = ("list", "tuple", "sorted", "set", "dict", "sum", "max", "min", "len", "frozenset")


def recompute_in_loop(fn: ast.FunctionDef | ast.AsyncFunctionDef, src: Source) -> Iterator[Candidate]:
    stores: dict[str, int] = {}
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            stores[node.id] = stores.get(node.id, 0) + 1
    for assign in (n for n in fn.body if isinstance(n, ast.Assign)):
        target = assign.targets[0] if len(assign.targets) == 1 else None
        value = assign.value
        if not (isinstance(target, ast.Name) and stores.get(target.id) == 1 and isinstance(value, ast.Call)
                and isinstance(value.func, ast.Name) and value.func.id in _COSTLY and value.args):  # fmt: skip
            continue
        if value.func.id == "len" and not (isinstance(value.args[0], ast.Call)):
            continue  # len of a sized object is O(1): no slowdown to gain
        text = src.segment(value)
        if "\n" in text:
            continue
        loops = [n for n in ast.walk(fn) if isinstance(n, ast.For | ast.While) and n.lineno > assign.lineno]
        uses = {(u.lineno, u.col_offset): u for loop in loops for stmt in loop.body for u in ast.walk(stmt)
                if isinstance(u, ast.Name) and u.id == target.id and isinstance(u.ctx, ast.Load)}  # fmt: skip
        if uses:
            edits = tuple(TextEdit(src.start(u), src.end(u), f"({text})") for u in uses.values())
            yield Candidate("recompute_in_loop", edits, f"recompute {target.id} = {text[:40]} at each use in the loop")


def drop_cache(fn: ast.FunctionDef | ast.AsyncFunctionDef, src: Source) -> Iterator[Candidate]:
    for deco in fn.decorator_list:
        name = deco.func if isinstance(deco, ast.Call) else deco
        label = name.attr if isinstance(name, ast.Attribute) else name.id if isinstance(name, ast.Name) else ""
        if label in ("lru_cache", "cache"):
            start, end = src.line_span(deco.lineno, deco.end_lineno)
            yield Candidate("drop_cache", (TextEdit(start, end, ""),), f"remove @{label}")


TRANSFORMS = (set_to_list, deque_to_list, append_to_concat, membership_in_list, recompute_in_loop, drop_cache)


def slowdowns_for_function(src: Source, qualname: str) -> list[Candidate]:
    """Every slowdown the transforms propose in one function, in a stable order."""
    fn = find_function(src.tree, qualname)
    found = [c for transform in TRANSFORMS for c in transform(fn, src)]
    unique = {(c.operator, c.edits): c for c in found}
    return sorted(unique.values(), key=lambda c: (c.edits[0].start, c.operator, c.edits))
