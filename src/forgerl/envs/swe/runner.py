"""A tiny standalone test runner, copied into the sandbox and run there (no forgerl import).

Why not pytest: the pipeline runs the suite once per mutant (hundreds of times) and pytest's start-up
dominates; and the issue writer needs, for each failing assert, the call, the expected and the
actual value, which this runner extracts by re-evaluating the two sides of a failing `assert x == y`
in the test's frame. Test files stay plain pytest files (agents may run them with pytest too).

Usage: python _forgerl_runner.py TEST_FILE... ; reads a nonce line on stdin; prints one line
`<nonce> <json>` with a result per test: name, outcome (passed/failed/error/timeout), message, detail.
The workspace root (the current directory) goes first on sys.path, so the workspace copy of a
package shadows the installed one.
"""

import ast
import importlib.util
import json
import os
import signal
import sys
import traceback

PER_TEST_TIMEOUT_S = float(os.environ.get("FORGERL_TEST_TIMEOUT_S", "5"))
MAX_REPR = 300


class TestTimeout(BaseException):
    pass


def _on_alarm(signum, frame):
    raise TestTimeout()


def _short(value):
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ in buggy code
        text = f"<unrepresentable {type(value).__name__}: {exc}>"
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
    return best, ast.get_source_segment(source, best) or ""


def _explain(exc, path, source, tree):
    """Detail of a failure: the test statement, and for `assert a == b` the actual and expected."""
    frame, lineno = None, None
    for fs, line in traceback.walk_tb(exc.__traceback__):
        if os.path.abspath(fs.f_code.co_filename) == os.path.abspath(path):
            frame, lineno = fs, line
    detail = {"exception": f"{type(exc).__name__}: {exc}"[:MAX_REPR]}
    if frame is None:
        return detail
    node, text = _statement_at(source, tree, lineno)
    detail["statement"] = text
    if isinstance(node, ast.With) and node.items:
        inner = [ast.get_source_segment(source, s) or "" for s in node.body]
        detail["call"] = "\n".join(inner)
    if isinstance(exc, AssertionError) and isinstance(node, ast.Assert):
        test = node.test
        if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq | ast.Is):
            detail["call"] = ast.get_source_segment(source, test.left)
            signal.setitimer(signal.ITIMER_REAL, PER_TEST_TIMEOUT_S)
            try:
                scope = dict(frame.f_globals)
                scope.update(frame.f_locals)
                for key, side in (("actual", test.left), ("expected", test.comparators[0])):
                    code = compile(ast.Expression(side), path, "eval")
                    try:
                        detail[key] = _short(eval(code, scope))
                    except Exception as inner:
                        detail[key + "_raises"] = f"{type(inner).__name__}: {inner}"[:MAX_REPR]
            except TestTimeout:
                pass
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        else:
            detail["call"] = ast.get_source_segment(source, test)
    elif isinstance(node, ast.Assert):
        detail["call"] = ast.get_source_segment(source, node.test)
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
        return [{"name": "<collect>", "file": path, "outcome": "error", "message": f"{type(exc).__name__}: {exc}"[:MAX_REPR]}]
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
        except AssertionError as exc:
            result.update(outcome="failed", message=str(exc)[:MAX_REPR], detail=_explain(exc, path, source, tree))
        except BaseException as exc:  # pytest.raises' Failed is a BaseException
            result.update(outcome="error", message=f"{type(exc).__name__}: {exc}"[:MAX_REPR])
            result["detail"] = _explain(exc, path, source, tree)
        results.append(result)
    return results


def main(argv):
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
