"""The untrusted half of scoring: copied into the sandbox and run there (no forgerl import).

Why it exists: the agent's package is imported into this process, so anything this process says
about a test is a claim made by code the agent controls. So it decides nothing. It receives only
code to run (the suite's header, then per test a list of statements and expressions, with test
names, assert operators and expected values stripped out by the host: `judge.py`), and it reports
what each expression evaluated to, as plain data, or which exception it raised. The host compares
those values with the expectations it kept to itself. Without the expected values, forging a pass
means computing the right answers, which is fixing the bug.

Protocol: stdin holds one JSON plan, read whole before any package code runs. Results go out as
one JSON object per line on a duplicate of the original stdout; fd 1 is then pointed at stderr, so
nothing the package prints can land on the result channel. Lines: {"t", "s", "value"} (an encoded
value, "eval" steps), {"t", "s", "ok": true} ("exec" steps), {"t", "s", "raised": [type names of
the exception's MRO], "message"}, {"t", "s", "timeout": why}, {"integrity": [names]} when something
this process relies on was replaced, and {"done": n_tests} last.

Value encoding (read by the host, which never calls a method of an object from here): null, true,
false, ["int", digits], ["float", repr], ["str", s], ["bytes", hex], ["list"|"tuple"|"set"|
"frozenset", [items]], ["dict", [[k, v], ...]], or ["opaque", type name, repr] for anything else.
"""

import builtins
import json
import os
import signal
import sys

PER_TEST_TIMEOUT_S = 5.0
MAX_NODES = 20_000  # values of a correct answer are small; a larger one is reported as opaque
MAX_DEPTH = 60
MAX_LINE_CHARS = 20_000
MAX_TEXT = 300

_dumps = json.dumps  # bound before package code runs: replacing json.dumps later changes nothing here


class TestTimeout(BaseException):
    pass


class _TooLarge(Exception):
    pass


def _on_alarm(signum, frame):
    raise TestTimeout()


def _type_name(value):
    kind = type(value)
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', '?')}"


def _short_repr(value):
    try:
        text = repr(value)
    except BaseException as exc:  # a hostile or broken __repr__
        text = f"<unrepresentable: {type(exc).__name__}>"
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def _encode(value, budget, depth=0):
    """Plain data, read through the base types' own methods so a subclass cannot change what is
    reported; anything else is opaque and equals nothing on the host."""
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        raise _TooLarge()
    if value is None or value is True or value is False:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return ["int", int.__repr__(value)]
        except ValueError:  # more digits than int->str allows
            raise _TooLarge() from None
    if isinstance(value, float):
        return ["float", float.__repr__(value)]
    if isinstance(value, str):
        return ["str", str.__str__(value)]
    if isinstance(value, bytes):
        return ["bytes", bytes.hex(value)]
    for kind, name in ((list, "list"), (tuple, "tuple"), (set, "set"), (frozenset, "frozenset")):
        if isinstance(value, kind):
            return [name, [_encode(item, budget, depth + 1) for item in kind.__iter__(value)]]
    if isinstance(value, dict):
        return ["dict", [[_encode(k, budget, depth + 1), _encode(v, budget, depth + 1)] for k, v in dict.items(value)]]
    return ["opaque", _type_name(value), _short_repr(value)]


def encode(value):
    try:
        return _encode(value, [MAX_NODES])
    except _TooLarge:
        return ["opaque", _type_name(value), "<too large to report>"]


def _raised(exc):
    names = []
    for kind in getattr(type(exc), "__mro__", ()):
        names.append(str(getattr(kind, "__qualname__", "?")))
    try:
        message = str(exc)
    except BaseException:
        message = "<unprintable message>"
    return {"raised": names, "message": message[:MAX_TEXT]}


def run_step(step, scope):
    """Run one step in the test's namespace; what it produced, without judging it."""
    code = compile(step["code"], "<hidden test>", step["mode"])
    try:
        if step["mode"] == "eval":
            return {"value": encode(eval(code, scope))}
        exec(code, scope)
        return {"ok": True}
    except TestTimeout:
        return {"timeout": f"took longer than {PER_TEST_TIMEOUT_S} s"}
    except (MemoryError, RecursionError) as exc:
        # resource exhaustion races the timer: reported like a timeout, as the runner does
        return {"timeout": f"exhausted resources: {type(exc).__name__}"}
    except BaseException as exc:  # SystemExit from package code is a result, not an exit
        return _raised(exc)


_WATCHED = {"json.dumps": (json, "dumps"), "json.loads": (json, "loads"), "os._exit": (os, "_exit"),
            "os.write": (os, "write"), "signal.signal": (signal, "signal"), "signal.setitimer": (signal, "setitimer"),
            "sys.exit": (sys, "exit")}  # fmt: skip


def snapshot():
    """Identities of what this process relies on (builtins, its own functions, a few library
    functions), taken before package code runs."""
    seen = {f"builtins.{k}": id(v) for k, v in vars(builtins).items()}
    seen.update({f"worker.{k}": id(v) for k, v in globals().items() if callable(v)})
    seen.update({name: id(getattr(module, attr, None)) for name, (module, attr) in _WATCHED.items()})
    return seen


def changed_since(before):
    """What package code replaced: honest code has no reason to touch any of it. In-process
    checks can be switched off by the code they check; they make clumsy tampering visible."""
    now = snapshot()
    changed = sorted(name for name, ident in before.items() if now.get(name) != ident)
    changed += sorted(name for name in now if name not in before and name.startswith("builtins."))
    return changed


class Channel:
    def __init__(self, fd):
        self._fd = fd

    def send(self, message):
        line = _dumps(message)
        if len(line) > MAX_LINE_CHARS and "value" in message:
            message = dict(message, value=["opaque", "?", "<too large to report>"])
            line = _dumps(message)
        data = (line + "\n").encode("utf-8", "backslashreplace")
        while data:
            data = data[os.write(self._fd, data) :]


def run_plan(plan, channel):
    scope = {"__name__": "_forgerl_hidden_tests", "__builtins__": builtins}
    before = snapshot()
    reported = set()
    header = run_step({"mode": "exec", "code": plan["header"]}, scope)
    if "ok" not in header:
        channel.send(dict(header, header=True))
    for t, steps in enumerate(plan["tests"]):
        namespace = dict(scope)
        signal.setitimer(signal.ITIMER_REAL, PER_TEST_TIMEOUT_S)
        try:
            for s, step in enumerate(steps):
                result = run_step(step, namespace)
                channel.send(dict(result, t=t, s=s))
                if "timeout" in result:
                    break
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        changed = [name for name in changed_since(before) if name not in reported]
        if changed:
            reported.update(changed)
            channel.send({"integrity": changed})
    channel.send({"done": len(plan["tests"])})


def main(argv):
    global PER_TEST_TIMEOUT_S
    if argv and argv[0].startswith("--timeout="):
        PER_TEST_TIMEOUT_S = float(argv[0].split("=", 1)[1])
    plan = json.loads(sys.stdin.read())
    channel = Channel(os.dup(1))
    os.dup2(2, 1)  # the package's prints (and its child processes') go to stderr
    sys.path.insert(0, os.getcwd())
    signal.signal(signal.SIGALRM, _on_alarm)
    run_plan(plan, channel)


if __name__ == "__main__":
    main(sys.argv[1:])
