"""The host half of scoring (judge.py): what the sandbox is told, how its report is read, and that
outcomes are decided from plain data on the host. No sandbox is started here."""

from __future__ import annotations

import json

import pytest

from forgerl.envs.swe.judge import Opaque, ProtocolError, decode, judge, plan_suite, read_report
from forgerl.envs.swe.worker import encode

SUITE = '''import pytest

import mod


def helper(x):
    return x


def test_secret__values():
    rows = [{"a": 1}, {"a": 2}]
    assert mod.f(rows) == {1: [rows[0]], 2: [rows[1]]}
    assert mod.g(3) == "EXPECTED-SECRET"
    assert mod.h() is True


def test_secret__raises():
    with pytest.raises(ValueError, match="bad"):
        mod.f(None)
    assert not mod.g(0)
'''


def lines(*messages) -> str:
    return "\n".join(json.dumps(m) for m in messages)


def honest_report(values_and_raises) -> str:
    """A report as an honest worker writes it for SUITE, given each step's result."""
    out = [dict(result, t=t, s=s) for (t, s), result in values_and_raises.items()]
    return lines(*out, {"done": 2})


PASSING = {
    (0, 0): {"ok": True},
    (0, 1): {"value": encode({1: [{"a": 1}], 2: [{"a": 2}]})},
    (0, 2): {"value": encode("EXPECTED-SECRET")},
    (0, 3): {"value": encode(True)},
    (1, 0): {"raised": ["ValueError", "Exception", "BaseException", "object"], "message": "bad input"},
    (1, 1): {"value": encode(0)},
}


def test_the_sandbox_is_told_code_only_no_names_operators_or_expected_values():
    sent = plan_suite(SUITE).worker_input()
    for secret in ("EXPECTED-SECRET", "test_secret", "is True", "ValueError", "match", "==", "assert", "not "):
        assert secret not in sent, secret
    assert "mod.g(3)" in sent and "mod.f(None)" in sent and "def helper" in sent


def test_honest_report_passes_and_a_wrong_value_fails_with_detail():
    plan = plan_suite(SUITE)
    results = judge(plan, read_report(honest_report(PASSING), plan))
    assert {n: r.outcome for n, r in results.items()} == {"test_secret__values": "passed", "test_secret__raises": "passed"}
    wrong = {**PASSING, (0, 2): {"value": encode("expected-secret")}}
    report = read_report(honest_report(wrong), plan)
    assert not report.tampering
    failed = judge(plan, report)["test_secret__values"]
    assert failed.outcome == "failed" and failed.detail["expected"] == "'EXPECTED-SECRET'"


@pytest.mark.parametrize(
    "step, result",
    [
        ((0, 3), {"value": encode(1)}),  # `is True` wants the bool
        ((1, 0), {"raised": ["KeyError", "LookupError"], "message": "bad"}),  # wrong exception
        ((1, 0), {"raised": ["ValueError"], "message": "other"}),  # message does not match
        ((1, 0), {"value": encode(None)}),  # did not raise
        ((1, 1), {"value": encode(1)}),  # `assert not` on a truthy value
        ((0, 2), {"value": ["opaque", "mod.Equal", "<Equal>"]}),  # not plain data: equals nothing
        ((0, 2), {"timeout": "took longer than 5 s"}),
    ],
)
def test_each_kind_of_check_can_fail(step, result):
    plan = plan_suite(SUITE)
    report = read_report(honest_report({**PASSING, step: result}), plan)
    assert judge(plan, report)[plan.tests[step[0]].name].outcome != "passed"


def test_objects_that_are_not_plain_data_are_opaque_and_equal_nothing():
    class Liar:
        def __eq__(self, other):
            return True

    class Text(str):
        def __eq__(self, other):
            return True

    opaque = decode(encode(Liar()))
    assert isinstance(opaque, Opaque) and opaque != opaque.text and [opaque] != [Opaque("x", "y")]
    assert decode(encode(Text("abc"))) == "abc" and decode(encode(Text("abc"))) != "xyz"  # content, not __eq__
    assert decode(encode({"k": (1, 2.5, b"x", frozenset({None}))})) == {"k": (1, 2.5, b"x", frozenset({None}))}
    deep: list = []
    deep.append(deep)
    assert isinstance(decode(encode(deep)), Opaque)  # a cycle is reported, not followed forever


@pytest.mark.parametrize("bad", [["set", [["list", []]]], ["int", "12x"], ["eval", "1"], {"a": 1}, ["opaque", 1, 2]])
def test_decode_rejects_what_an_honest_worker_never_sends(bad):
    with pytest.raises(ProtocolError):
        decode(bad)


@pytest.mark.parametrize(
    "stdout",
    [
        "0123456789abcdef01234567 [{\"name\": \"test_secret__values\", \"outcome\": \"passed\"}]",  # a forged runner line
        lines({"t": 0, "s": 0, "ok": True}, {"t": 0, "s": 0, "ok": True}),  # the same step twice
        lines({"t": 0, "s": 1, "ok": True}, {"t": 0, "s": 0, "ok": True}),  # out of order
        lines({"t": 7, "s": 0, "ok": True}),  # a step the plan does not have
        lines({"t": 0, "s": 0, "ok": True, "outcome": "passed"}),  # extra keys
        lines({"done": 2}),  # complete, but no results
        lines({"done": 2}, {"t": 0, "s": 0, "ok": True}),  # output after the end
        lines({"integrity": ["builtins.getattr"]}),
    ],
)
def test_reports_an_honest_worker_never_writes_are_tampering(stdout):
    plan = plan_suite(SUITE)
    assert read_report(stdout, plan).tampering


def test_a_timeout_skips_the_rest_of_its_test_without_being_tampering():
    plan = plan_suite(SUITE)
    steps = {k: v for k, v in PASSING.items() if k[0] == 1}
    steps[(0, 0)] = {"timeout": "took longer than 5 s"}
    report = read_report(honest_report(dict(sorted(steps.items()))), plan)
    assert not report.tampering
    assert judge(plan, report)["test_secret__values"].outcome == "timeout"
