"""Issue text is written from the failing behaviour: the call, what came back, what was expected."""

from __future__ import annotations

import random

import pytest

from forgerl.envs.swe.issue import describe_failure, write_issue
from forgerl.envs.swe.verify import CaseResult

SUITE = "import pytest\nimport mod\nfrom operator import add\n\n\ndef test_f__x():\n    assert mod.f(1) == 2\n"


def result(**detail):
    return CaseResult("test_f__x", "failed", "", detail)


def test_wrong_value_names_call_actual_and_expected():
    text = write_issue("f", "mod", [result(call="mod.f(1)", actual="3", expected="2", exception="AssertionError: ")],
                       SUITE, random.Random(0))
    assert "mod.f(1)" in text and "returns `3`, but I expected `2`" in text
    assert "import mod" in text and "operator" not in text and "pytest" not in text
    assert text.startswith("# ")


def test_exception_and_missing_raise_and_setup_lines():
    raised = describe_failure(result(call="mod.f(v)", setup="v = [1]", expected="2", actual_raises="TypeError: no"))
    assert "v = [1]\nmod.f(v)" in raised and "raises `TypeError: no` instead of returning `2`" in raised
    no_raise = describe_failure(result(call="mod.f(None)", exception="Failed: DID NOT RAISE <class 'ValueError'>"))
    assert "should raise `ValueError`" in no_raise


def test_wording_varies_with_the_seed_but_is_deterministic():
    failures = [result(call="mod.f(1)", actual="3", expected="2")]
    texts = {write_issue("f", "mod", failures, SUITE, random.Random(seed)) for seed in range(12)}
    assert len(texts) > 1
    first, second = (write_issue("f", "mod", failures, SUITE, random.Random(5)) for _ in range(2))
    assert first == second


def test_no_detail_is_refused():
    with pytest.raises(ValueError, match="enough detail"):
        write_issue("f", "mod", [result()], SUITE, random.Random(0))
