"""The corpus sources: deterministic documents, what the code source reads, the episodes' scaffolds."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from forgerl.errors import ConfigError
from forgerl.model.tokenizer import load_default_tokenizer
from forgerl.pretrain.sources import (
    EPISODE_STRIDE,
    CodeSource,
    EpisodeSource,
    SeededTextSource,
    SyntheticSource,
    chunks,
    stdlib_files,
)


@pytest.fixture(scope="module")
def tok():
    return load_default_tokenizer()


def test_chunks_cut_at_blank_lines_and_lose_nothing() -> None:
    text = "def a():\n    return 1\n\n\ndef b():\n    return 2\n\n" + "x = 1\n" * 30 + "y" * 250 + "\n"
    pieces = chunks(text, limit=100)
    assert "".join(pieces) == text
    assert all(0 < len(p) <= 100 for p in pieces)
    assert pieces[0] == "def a():\n    return 1\n\n\ndef b():\n    return 2\n\n"  # cut at the blank line


def test_the_code_source_reads_the_stdlib_without_its_tests() -> None:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = {p.relative_to(root).as_posix() for p in stdlib_files()}
    assert {"json/decoder.py", "collections/__init__.py", "textwrap.py"} <= files
    assert not any(f.startswith(("test/", "idlelib/idle_test/")) or "/tests/" in f for f in files)
    assert "pydoc_data/topics.py" not in files  # huge


def test_sources_are_deterministic_for_a_seed(tok) -> None:
    for make in (CodeSource, SyntheticSource, EpisodeSource, SeededTextSource):
        a, b, other = make(tok, 0), make(tok, 0), make(tok, 1)
        assert a.document(3) == b.document(3)
        assert a.document(0) != a.document(1)
        assert a.document(0) != other.document(0), make.__name__


def test_episodes_vary_the_scaffold_but_never_draw_a_held_out_one(tok) -> None:
    source = EpisodeSource(tok, 0)
    texts = [tok.decode(source.document(i)) for i in range(16)]
    assert any("<|im_start|>" in t for t in texts) and any("]~b]" in t for t in texts)  # hermes and minimax_m2
    assert not any("<|system|>" in t for t in texts)  # json_tools is held out
    assert any("get_basket" not in t and "submit_answer" not in t for t in texts)  # renamed tools
    with pytest.raises(ConfigError, match="held-out evaluation tasks"):
        source.task_seed(EPISODE_STRIDE)


def test_a_repeat_document_is_one_span_written_two_to_four_times(tok) -> None:
    from forgerl.pretrain.synthetic import repeat_text

    def writings(text: str) -> int:
        """How many times one span is written back to back in `text` (0: not a repeat)."""
        for k in (4, 3, 2):  # most first: four writings are also two writings of a doubled span
            for sep in ("\n", "\n\n", " ", "\n---\n"):
                span = text[: (len(text) - (k - 1) * len(sep)) // k]
                if span and sep.join([span] * k) == text:
                    return k
        return 0

    counts = {writings(repeat_text(f"repeat:0:{i}")) for i in range(50)}
    assert counts == {2, 3, 4}
    assert tok.decode(SeededTextSource(tok, 0).document(7)) == repeat_text("repeat:0:7")


def test_a_numbers_document_repeats_numbers_only_on_its_own_seeds(tok) -> None:
    from forgerl.pretrain.sources import make_source
    from forgerl.pretrain.synthetic import repeat_text

    source = make_source("numbers", tok, 0)
    for i in range(30):
        text = tok.decode(source.document(i))
        assert text == repeat_text(f"numbers:0:{i}", numbers_only=True) != repeat_text(f"repeat:0:{i}")
        assert set(text) <= set("0123456789. ,\n-")
        first = text.replace("\n---\n", "\n").replace(", ", " ").split()[0]
        assert text.count(first) >= 2


def test_a_mentions_document_is_its_seeds_mention_tasks(tok) -> None:
    from forgerl.pretrain.sources import make_source
    from forgerl.pretrain.synthetic import mentions_text

    source = make_source("mentions", tok, 2)
    assert [tok.decode(source.document(i)) for i in range(5)] == [mentions_text(f"mentions:2:{i}") for i in range(5)]
