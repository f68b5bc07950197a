"""Mixing and packing: shares by tokens, every token and separator kept in order, exact positions."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from forgerl.errors import ConfigError
from forgerl.model.tokenizer import load_default_tokenizer
from forgerl.pretrain.corpus import Corpus, CorpusState, parse_mix
from forgerl.pretrain.sources import make_source

SEP = -1


@dataclass
class Counting:
    """A fake source: document i of source `base` is [base*1000 + i] * (1 + i % length)."""

    name: str
    base: int
    length: int

    def document(self, index: int) -> list[int]:
        return [self.base * 1000 + index] * (1 + index % self.length)


def fakes() -> list[Counting]:
    return [Counting("code", 1, 37), Counting("synthetic", 2, 5), Counting("episodes", 3, 60)]


def test_packing_keeps_every_token_and_separator_in_order() -> None:
    corpus = Corpus(fakes(), {"code": 0.2, "synthetic": 0.5, "episodes": 0.3}, SEP)
    rows, names = corpus.batch(40, 17)
    stream = [t for row in rows for t in row] + corpus.state.rest
    assert all(len(r) == 17 for r in rows)
    # rebuild the stream from the documents each source gave, in the order their ids say
    docs, i = [], 0
    while i < len(stream):
        j = stream.index(SEP, i)
        docs.append(stream[i:j])
        i = j + 1
    assert stream[-1] == SEP
    for source in fakes():
        mine = [d for d in docs if d[0] // 1000 == source.base]
        assert mine == [source.document(k) for k in range(len(mine))]  # each document whole, none skipped
        assert all(name == source.name for row, nrow in zip(rows, names) for t, name in zip(row, nrow)
                   if t != SEP and t // 1000 == source.base)


def test_the_mix_holds_by_tokens() -> None:
    """Each source's share of the tokens is within one document of its weight: at most
    60 tokens of 20,000 here, so 0.005 is the stated tolerance."""
    weights = {"code": 0.2, "synthetic": 0.5, "episodes": 0.3}
    corpus = Corpus(fakes(), weights, SEP)
    _, names = corpus.batch(100, 200)
    flat = [n for row in names for n in row]
    for name, weight in weights.items():
        assert flat.count(name) / len(flat) == pytest.approx(weight, abs=0.005)


@pytest.mark.slow  # ~3 s quiet, 10 s on a busy machine; the fake sources above check the same rule exactly
def test_the_mix_holds_on_the_real_sources() -> None:
    """The real sources' documents are up to ~2k tokens, so over 40k tokens the stated tolerance is 0.05."""
    tok = load_default_tokenizer()
    weights = parse_mix("code=0.3,synthetic=0.4,episodes=0.3")
    corpus = Corpus([make_source(n, tok, 0) for n in weights], weights, tok.eos_token_id)
    _, names = corpus.batch(80, 512)
    flat = [n for row in names for n in row]
    for name, weight in weights.items():
        assert flat.count(name) / len(flat) == pytest.approx(weight, abs=0.05)


def test_a_saved_position_continues_the_stream_exactly() -> None:
    weights = {"code": 0.2, "synthetic": 0.5, "episodes": 0.3}
    straight = Corpus(fakes(), weights, SEP)
    first, _ = straight.batch(7, 23)
    saved = CorpusState.from_json(straight.state.to_json())
    rest, _ = straight.batch(9, 23)
    resumed = Corpus(fakes(), weights, SEP, state=saved)
    assert resumed.batch(9, 23)[0] == rest
    assert saved.rest  # the position was inside a document


def test_parse_mix() -> None:
    assert parse_mix("code=1,synthetic=3") == {"code": 0.25, "synthetic": 0.75}
    assert parse_mix("code=1,synthetic=0") == {"code": 1.0}
    with pytest.raises(ConfigError, match="unknown source 'books'"):
        parse_mix("books=1")
    with pytest.raises(ConfigError, match="not name=weight"):
        parse_mix("code")
    with pytest.raises(ConfigError, match="not name=weight"):
        parse_mix("code=-1")
    with pytest.raises(ConfigError, match="no source a positive weight"):
        parse_mix("code=0")
