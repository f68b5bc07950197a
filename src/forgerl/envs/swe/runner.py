"""A tiny standalone test runner, copied into the sandbox and run there (no forgerl import).

Why not pytest: the pipeline runs the suite once per mutant (hundreds of times) and pytest's start-up
dominates; and the issue writer needs, for each failing assert, the call, the expected and the
actual value, which this runner extracts by re-evaluating the two sides of a failing `assert x == y`
in the test's frame. Test files stay plain pytest files (agents may run them with pytest too).

Usage: python _forgerl_runner.py [--timeout=S] TEST_FILE... ; reads a nonce line on stdin; prints one line
`<nonce> <json>` with a result per test: name, outcome (passed/failed/error/timeout), message, detail.
The workspace root (the current directory) goes first on sys.path, so the workspace copy of a
package shadows the installed one.
"""

import ast
import importlib.util
import json
import os
import re
import signal
import sys
import traceback

PER_TEST_TIMEOUT_S = 5.0  # seconds per test; `--timeout=S` as the first argument overrides
MAX_REPR = 300
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


class TestTimeout(BaseException):
    pass


def _on_alarm(signum, frame):
    raise TestTimeout()


def _short(value):
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ in buggy code
        text = f"<unrepresentable {type(value).__name__}: {exc}>"
    text = _ADDRESS.sub("", text)  # `<object object at 0x7f..>` differs from run to run
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 3] + "..."


def _statement_at(source, tree, lineno):
    """The innermost statement of a test function that spans `lineno`, with its source text."""
    best = None
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and not isinstance(node, ast.FunctionDef | ast.ClassDef):
            if node.lineno <= lineno <= node.end_lineno:
                if best is None or node.lineno >= best.lineno and node.end_lineno <= best.end_lineno:
                    best = node
    if best is None:
        return None, ""
    return best, _segment(source, best)


def _segment(source, node):
    """Source text of a statement, its continuation lines dedented to match its first line."""
    text = ast.get_source_segment(source, node) or ""
    pad = " " * node.col_offset
    lines = text.split("\n")
    return "\n".join([lines[0]] + [ln[len(pad):] if ln.startswith(pad) else ln for ln in lines[1:]])


def _evaluate(side, frame, path):
    """Re-evaluate one side of a failed assert in the test's frame: ("value", repr) or ("raises", text)."""
    scope = dict(frame.f_globals)
    scope.update(frame.f_locals)
    signal.setitimer(signal.ITIMER_REAL, PER_TEST_TIMEOUT_S)
    try:
        return "value", _short(eval(compile(ast.Expression(side), path, "eval"), scope))
    except (Exception, TestTimeout) as inner:
        return "raises", f"{type(inner).__name__}: {inner}"[:MAX_REPR]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _setup_before(source, tree, node):
    """Non-assert statements of the test function that run before `node` (e.g. `first, seq = ...`):
    what a reader needs to reproduce the failing call."""
    for fn in tree.body:
        if isinstance(fn, ast.FunctionDef) and fn.lineno <= node.lineno <= fn.end_lineno:
            lines = [_segment(source, s) for s in fn.body
                     if s.end_lineno < node.lineno and not isinstance(s, ast.Assert)]
            return "\n".join(lines)
    return ""


def _explain(exc, path, source, tree):
    """Detail of a failure: the test statement, the call that misbehaved, and for `assert a == b`
    the actual and expected values."""
    frame, lineno = None, None
    for fs, line in traceback.walk_tb(exc.__traceback__):
        if os.path.abspath(fs.f_code.co_filename) == os.path.abspath(path):
            frame, lineno = fs, line
    detail = {"exception": f"{type(exc).__name__}: {exc}"[:MAX_REPR]}
    if frame is None:
        return detail
    node, text = _statement_at(source, tree, lineno)
    if node is None:
        return detail
    detail["statement"] = text
    detail["setup"] = _setup_before(source, tree, node)
    if isinstance(node, ast.With) and node.items:
        detail["call"] = "\n".join(_segment(source, s) for s in node.body)
    elif isinstance(node, ast.Assert):
        test = node.test
        if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq | ast.Is):
            detail["call"] = ast.get_source_segment(source, test.left)
            kind, value = _evaluate(test.comparators[0], frame, path)
            if kind == "value":
                detail["expected"] = value
            if isinstance(exc, AssertionError):
                kind, value = _evaluate(test.left, frame, path)
                detail["actual" if kind == "value" else "actual_raises"] = value
            else:
                detail["actual_raises"] = detail["exception"]
        else:
            detail["call"] = ast.get_source_segment(source, test)
    else:
        detail["call"] = text
    return detail


def _load(path, index):
    spec = importlib.util.spec_from_file_location(f"_forgerl_test_{index}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_file(path, index):
    with open(path, encoding="utf-8") as f:
        source = f.read()
    tree = ast.parse(source)
    try:
        signal.setitimer(signal.ITIMER_REAL, PER_TEST_TIMEOUT_S)
        try:
            module = _load(path, index)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"[:MAX_REPR]
        return [{"name": "<collect>", "file": path, "outcome": "error", "message": message}]
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")]
    results = []
    for name in names:
        fn = getattr(module, name, None)
        if not callable(fn):
            continue
        result = {"name": name, "file": path, "outcome": "passed"}
        try:
            signal.setitimer(signal.ITIMER_REAL, PER_TEST_TIMEOUT_S)
            try:
                fn()
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except TestTimeout:
            result.update(outcome="timeout", message=f"took longer than {PER_TEST_TIMEOUT_S} s")
        except (MemoryError, RecursionError) as exc:
            # resource exhaustion races the timer: report it like a timeout so the outcome does not
            # depend on which limit a runaway loop happens to hit first
            result.update(outcome="timeout", message=f"exhausted resources: {type(exc).__name__}")
        except AssertionError as exc:
            result.update(outcome="failed", message=str(exc)[:MAX_REPR], detail=_explain(exc, path, source, tree))
        except BaseException as exc:  # pytest.raises' Failed is a BaseException
            result.update(outcome="error", message=f"{type(exc).__name__}: {exc}"[:MAX_REPR])
            result["detail"] = _explain(exc, path, source, tree)
        results.append(result)
    return results


def main(argv):
    global PER_TEST_TIMEOUT_S
    if argv and argv[0].startswith("--timeout="):
        PER_TEST_TIMEOUT_S = float(argv[0].split("=", 1)[1])
        argv = argv[1:]
    nonce = sys.stdin.readline().strip() or "RESULT"
    sys.path.insert(0, os.getcwd())
    signal.signal(signal.SIGALRM, _on_alarm)
    results = []
    for index, path in enumerate(argv):
        results.extend(run_file(path, index))
    sys.stdout.flush()
    sys.stdout.write("\n" + nonce + " " + json.dumps(results) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
