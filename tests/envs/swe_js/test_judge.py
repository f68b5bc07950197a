"""The host-side judge: values decode strictly, equality is typed, and the result channel refuses
what an honest worker never writes (lines without the nonce, results out of order, an early end)."""

from __future__ import annotations

import asyncio

import pytest

from forgerl.envs.swe_js.judge import (
    NAN,
    UNDEFINED,
    Opaque,
    ProtocolError,
    decode,
    expected_value,
    read_report,
    run_suite,
    same,
)
from forgerl.envs.swe_js.packages import parse_suite

NONCE = "f00d"


def test_decode_and_typed_equality():
    assert decode(["a", [["n", "1"], ["s", "x"], None, True, ["u"], ["nan"]]]) == [1.0, "x", None, True, UNDEFINED, NAN]
    assert same(decode(["o", [["k", ["n", "2"]]]]), expected_value('{"k": 2}'))
    assert not same(True, expected_value("1")) and not same(1.0, expected_value("true"))
    assert not same(decode(["x", "[object Map]", ""]), expected_value("{}"))
    assert same(decode(["u"]), expected_value("undefined")) and not same(None, expected_value("undefined"))
    with pytest.raises(ProtocolError):
        decode(["evil", 1])
    assert isinstance(decode(["x", "function", ""]), Opaque)


def test_lines_without_the_nonce_are_tampering():
    out = f'{NONCE} {{"t": 0, "value": ["n", "1"]}}\n{{"t": 1, "value": ["n", "2"]}}\n{NONCE} {{"done": 1}}\n'
    report = read_report(out, NONCE, 1)
    assert report.done and report.tampering and "without the run's nonce" in report.tampering[0]


def test_out_of_order_duplicate_and_early_done_are_tampering():
    twice = f'{NONCE} {{"t": 0, "value": null}}\n{NONCE} {{"t": 0, "value": null}}\n'
    assert read_report(twice, NONCE, 2).tampering
    early = f'{NONCE} {{"t": 0, "value": null}}\n{NONCE} {{"done": 2}}\n'
    report = read_report(early, NONCE, 2)
    assert report.tampering and not report.done
    after = f'{NONCE} {{"done": 0}}\n'
    assert read_report(after, NONCE, 2).tampering


SUITE = parse_suite("toy", """@prelude const m = require('@/m.js')
@target add m.js add
add__small: m.add(1, 2) ==> 3
add__strings: m.add('a', 'b') ==> "ab"
add__throws: m.add() !!> TypeError
""")
PACKAGE = "exports.add = (a, b) => { if (a === undefined) throw new TypeError('no'); return a + b }\n"


def run(files: dict[str, str]):
    return asyncio.run(run_suite(files, SUITE, wall_s=30))


def test_a_correct_package_passes_and_a_wrong_one_fails_on_the_host():
    assert run({"m.js": PACKAGE}).failing() == []
    wrong = run({"m.js": PACKAGE.replace("a + b", "a - b")})
    assert sorted(wrong.failing()) == ["add__small", "add__strings"]
    assert wrong.results["add__small"].detail["actual"] == "-1"


@pytest.mark.parametrize("attack, sign", [
    ("require('fs').writeSync(1, '{\"t\": 0, \"value\": [\"n\", \"3\"]}\\n')", "nonce"),
    ("process.exit(0)", "exited cleanly"),
    ("JSON.stringify = () => '{}'", "replaced"),
    ("process.on('exit', () => require('fs').writeSync(1, 'ok\\n'))", ""),  # never runs: the worker skips exit hooks
])
def test_attacks_from_package_code_are_seen(attack, sign):
    result = run({"m.js": attack + "\n" + PACKAGE.replace("a + b", "a - b")})
    if sign:
        assert result.tampering and any(sign in t for t in result.tampering), result.tampering
    assert not result.passed("add__small")


def test_an_infinite_loop_is_a_timeout_not_a_hang():
    result = asyncio.run(run_suite({"m.js": "exports.add = () => { for (;;) {} }\n"}, SUITE, wall_s=30, timeout_ms=300))
    assert result.results["add__small"].outcome == "timeout"
