"""Probes 1-3 through their real code path (probes/reading.py) with fake policies that implement the
same Reader protocol: an oracle must score 1.0, a constant answer about 0, a half-copy exactly what
hand counting gives; and the real engine reader on tiny-random returns what the protocol promises."""

from __future__ import annotations

import functools

import pytest

from forgerl.chat import get_format
from forgerl.model.tokenizer import load_default_tokenizer, prepare_tokenizer
from forgerl.probes.items import coined_items, digit_items, kv_items
from forgerl.probes.reading import READING_PROBES, run_reading_probes, teacher_forced
from tests.probes.fakes import AnswerKeyReader, ConstantReader

N = 12


@functools.cache
def tokenizer(fmt: str):
    return prepare_tokenizer(load_default_tokenizer(), get_format(fmt))


def answer_key(transform=lambda answer: answer) -> dict[str, str]:
    return {item.prompt: transform(item.answer) for item in coined_items(N) + digit_items(N) + kv_items(N)}


@pytest.mark.parametrize("fmt_name", ["minimax_m2", "hermes", "json_tools"])
def test_an_oracle_scores_one_on_every_probe(fmt_name: str) -> None:
    fmt = get_format(fmt_name)
    out = run_reading_probes(AnswerKeyReader(tokenizer(fmt_name), fmt, answer_key()), fmt, N)
    assert set(out) == set(READING_PROBES)
    assert out["coined"]["accuracy"] == 1.0 and out["coined"]["unparsed"] == 0
    assert out["coined"]["name_only"]["accuracy"] == 1.0
    assert out["digits"]["free_running_per_digit"] == 1.0
    assert out["digits"]["teacher_forced_per_digit"] == 1.0
    assert out["digits"]["exact_match"]["accuracy"] == 1.0
    assert out["kv"]["accuracy"] == 1.0
    assert all(bucket["accuracy"] == 1.0 and bucket["n"] == N // 4 for bucket in out["kv"]["by_distance"].values())


def test_a_constant_answer_scores_about_zero() -> None:
    fmt = get_format("minimax_m2")
    out = run_reading_probes(ConstantReader(tokenizer("minimax_m2"), fmt, "0"), fmt, N)
    assert out["coined"]["accuracy"] == 0.0 and out["coined"]["name_only"]["accuracy"] == 0.0
    assert out["kv"]["accuracy"] == 0.0
    assert out["digits"]["exact_match"]["accuracy"] == 0.0
    assert out["digits"]["free_running_per_digit"] < 0.05  # a leading 0 now and then
    assert out["digits"]["teacher_forced_per_digit"] < 0.1


def test_half_a_copy_scores_what_counting_gives() -> None:
    """The oracle copying only the first half of each digit string: per digit, exactly the share of
    digits in first halves; the whole string never; the names and codes (cut too) never."""
    fmt = get_format("minimax_m2")
    out = run_reading_probes(AnswerKeyReader(tokenizer("minimax_m2"), fmt, answer_key(lambda a: a[: len(a) // 2])), fmt, N)
    digits = [item.answer for item in digit_items(N)]
    assert out["digits"]["free_running_per_digit"] == pytest.approx(sum(len(d) // 2 for d in digits) / sum(map(len, digits)))
    assert out["digits"]["digits"] == sum(map(len, digits))
    assert out["digits"]["exact_match"]["accuracy"] == 0.0
    assert out["digits"]["teacher_forced_per_digit"] == 1.0  # teacher forcing never reads the reply
    assert out["coined"]["accuracy"] == 0.0 and out["kv"]["accuracy"] == 0.0


def test_a_sentence_that_copies_the_name_counts_but_is_not_name_only() -> None:
    fmt = get_format("minimax_m2")
    key = answer_key(lambda a: f"It is called {a}." if a.isalpha() else a)
    out = run_reading_probes(AnswerKeyReader(tokenizer("minimax_m2"), fmt, key), fmt, N, ["coined"])
    assert out["coined"]["accuracy"] == 1.0 and out["coined"]["name_only"]["accuracy"] == 0.0


def test_teacher_forcing_covers_every_digit_with_merged_digit_tokens() -> None:
    """The project's BPE merges digits (`48|213|...`); every digit still gets one flag."""
    fmt = get_format("minimax_m2")
    tok = tokenizer("minimax_m2")
    item = digit_items(3)[2]
    assert any(len(tok.decode([i]).strip()) > 1 for i in tok.encode(item.answer, add_special_tokens=False))
    flags = teacher_forced(ConstantReader(tok, fmt, "0"), fmt, item)
    assert flags is not None and len(flags) == len(item.answer)


@pytest.mark.slow
def test_the_engine_reader_on_tiny_random() -> None:
    from forgerl.engine import load_engine
    from forgerl.probes.reader import EngineReader

    engine = load_engine("tiny-random", max_context=512, num_slots=4, speculative=0)
    try:
        reader = EngineReader(engine)
        fmt = get_format("minimax_m2")
        out = run_reading_probes(reader, fmt, 4, max_tokens=8)
        assert 0.0 <= out["digits"]["free_running_per_digit"] <= 1.0
        assert out["coined"]["n"] == 4 and len(out["coined"]["examples"]) == 3
        ids = reader.tokenizer.encode("12345", add_special_tokens=False)
        assert len(reader.argmax_next(ids)) == len(ids)
        first, again = reader.complete([ids, ids], 6)
        assert first == again and 1 <= len(first) <= 6  # greedy: the same prompt, the same reply
    finally:
        engine.close()
