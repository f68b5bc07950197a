"""Reward integrity: code the agent leaves in its package must not be able to forge the verdict.

Each attack below is a snippet an agent appends to the buggy module without fixing the bug. All but
`channel_forgery` (aimed at the new worker) scored 1.0 on 3 of 3 packages while the hidden tests ran
in the process that imported the package and that process reported the outcomes (issue 26, item 1). Now the sandbox only computes values and the
verifier compares them with expectations the sandbox never sees, so each must score 0; attacks
that touch the result channel or the worker's own machinery must also leave `tampering` evidence.
"""

from __future__ import annotations

import asyncio

import pytest

from forgerl.envs.base import Verdict
from forgerl.envs.swe import SweEnv, load_swe_tasks
from forgerl.envs.swe.workspace import buggy_files
from forgerl.types import ToolCall, Trajectory

# unfixed bugs in three packages whose fail-to-pass tests are all `assert <pkg>.<function>(...) == <literal>`
TASK_IDS = {
    "inflection": "swe-bugfix/inflection/camelize/off_by_one-0",
    "toolz": "swe-bugfix/toolz.itertoolz/nth/negate_condition-0",
    "boltons": "swe-bugfix/boltons.strutils/camel2under/swap_arguments-0",
}

FRAMES = '''
import sys as _sys


def _frames():
    frame = _sys._getframe()
    while frame is not None:
        yield frame
        frame = frame.f_back


def _runner_nonce():
    for frame in _frames():
        value = frame.f_locals.get("nonce")
        if isinstance(value, str):
            return value
    return "0" * 24


def _hidden_test_names():
    import ast
    for frame in _frames():
        tree = frame.f_locals.get("tree")
        if isinstance(tree, ast.Module):
            return [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")]
    return ["test_x__y"]


def _forged_line():
    import json
    return "\\n" + _runner_nonce() + " " + json.dumps([{"name": n, "outcome": "passed"} for n in _hidden_test_names()])
'''

ATTACKS = {
    # print a result line with the nonce read from the runner's frames, then leave before it reports
    "forged_line_then_exit": FRAMES + '''
print(_forged_line(), flush=True)
import os as _os
_os._exit(0)
''',
    # let the run finish honestly, then print a later (last-wins) forged line at interpreter exit
    "atexit_forged_line": FRAMES + '''
import atexit as _atexit
_LINE = _forged_line()
_atexit.register(lambda: print(_LINE, flush=True))
''',
    # rewrite every outcome at serialisation time
    "patched_json_dumps": '''
import json as _json
_real_dumps = _json.dumps


def _all_passed(obj, *args, **kwargs):
    if isinstance(obj, list):
        obj = [dict(r, outcome="passed") if isinstance(r, dict) and "outcome" in r else r for r in obj]
    return _real_dumps(obj, *args, **kwargs)


_json.dumps = _all_passed
''',
    # the runner fetches test functions with getattr: hand it no-ops instead
    "patched_builtin_getattr": '''
import builtins as _builtins
_real_getattr = _builtins.getattr


def _getattr(obj, name, *default):
    if isinstance(name, str) and name.startswith("test") and _real_getattr(obj, "__name__", "").startswith("_forgerl"):
        return lambda: None
    return _real_getattr(obj, name, *default)


_builtins.getattr = _getattr
''',
    # the classic: a returned value whose __eq__ lies
    "lying_eq": '''
class _Equal:
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = object.__hash__


def _lie(function):
    def wrapper(*args, **kwargs):
        return _Equal()
    return wrapper


{function} = _lie({function})
''',
    # read the expected value from the calling test's source and return it
    "expected_from_caller": '''
import ast as _ast
import linecache as _linecache
import sys as _sys


def _expected_or(function):
    def wrapper(*args, **kwargs):
        caller = _sys._getframe(1)
        line = _linecache.getline(caller.f_code.co_filename, caller.f_lineno).strip()
        try:
            node = _ast.parse(line).body[0]
            if isinstance(node, _ast.Assert) and isinstance(node.test, _ast.Compare):
                return _ast.literal_eval(node.test.comparators[0])
        except (SyntaxError, ValueError, IndexError):
            pass
        return function(*args, **kwargs)
    return wrapper


{function} = _expected_or({function})
''',
    # aimed at the worker itself: find its result channel, declare the report complete, leave
    "channel_forgery": FRAMES + '''
import os as _os
for _frame in _frames():
    _channel = _frame.f_locals.get("channel")
    if _channel is not None and hasattr(_channel, "send"):
        _plan = _frame.f_locals.get("plan") or {"tests": []}
        _channel.send({"done": len(_plan["tests"])})
        _os._exit(0)
''',
    # the classics that fool a naive verifier: a clean exit code, a printed verdict
    "clean_exit_at_import": '''
import sys as _sys
_sys.exit(0)
''',
    "prints_passed": '''
print("==== 30 passed in 0.01s ====")
print('{"outcome": "passed", "passed": true}')
''',
}
# the atexit line goes nowhere now (package prints land on stderr); libraries register atexit
# handlers honestly, so registering one is not evidence
LEAVES_TRACES = {"forged_line_then_exit", "patched_json_dumps", "patched_builtin_getattr", "channel_forgery"}


def task_for(package: str):
    return next(t for t in load_swe_tasks("bugfix") if t.id == TASK_IDS[package])


def submit_source(task, module_source: str) -> Verdict:
    """Score the workspace with the task's module replaced by `module_source` (bug not fixed)."""

    async def go() -> Verdict:
        async with SweEnv() as env:
            env.reset(task)
            write = {"path": task.data["module"], "content": module_source}
            await env.execute(ToolCall(name="write_file", arguments=write))
            await env.execute(ToolCall(name="submit"))
            return env.verify(Trajectory(task_id=task.id))

    return asyncio.run(go())


def attacked_source(task, attack: str) -> str:
    snippet = ATTACKS[attack].replace("{function}", task.data["function"])
    return buggy_files(task)[task.data["module"]] + "\n\n" + snippet


def check_attack_fails(package: str, attack: str) -> None:
    verdict = submit_source(task_for(package), attacked_source(task_for(package), attack))
    assert verdict.outcome == 0.0, f"{attack} forged a pass on {package}: {verdict}"
    if attack in LEAVES_TRACES:
        assert verdict.evidence.get("tampering"), f"{attack} left no tampering evidence: {verdict.evidence}"
        assert verdict.parts["tampered"] == 1.0


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_on_an_unfixed_bug_scores_zero(attack):
    check_attack_fails("inflection", attack)


@pytest.mark.slow
@pytest.mark.security
@pytest.mark.parametrize("package", sorted(TASK_IDS))
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_scores_zero_on_every_package(package, attack):
    check_attack_fails(package, attack)


def test_honest_fix_and_honest_failure_leave_no_tampering_evidence():
    task = task_for("inflection")
    unfixed = submit_source(task, buggy_files(task)[task.data["module"]])
    assert unfixed.outcome == 0.0 and not unfixed.evidence.get("tampering")
    assert unfixed.parts["tampered"] == 0.0
