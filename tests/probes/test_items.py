"""Generated probe items: deterministic, from seeds no training data uses, shaped as documented."""

from __future__ import annotations

import pytest

from forgerl.probes import PROBE_SEED_BASE
from forgerl.probes.items import (
    DIGIT_LENGTHS,
    KV_PAIRS,
    coined_items,
    digit_items,
    distance_bucket,
    known_words,
    kv_items,
    probe_rng,
)


def test_probe_seeds_start_above_every_other_seed_base() -> None:
    from forgerl.envs.suites import HELD_OUT_SEED_BASE
    from forgerl.evolve.splits import VALIDATION_SEED_BASE

    assert PROBE_SEED_BASE == 2_000_000_000
    assert PROBE_SEED_BASE > max(HELD_OUT_SEED_BASE, VALIDATION_SEED_BASE) + 10**8
    with pytest.raises(ValueError, match="PROBE_SEED_BASE"):
        probe_rng("coined", PROBE_SEED_BASE - 1)
    with pytest.raises(ValueError, match="PROBE_SEED_BASE"):
        probe_rng("digits", 0)


@pytest.mark.parametrize("make", [coined_items, digit_items, kv_items])
def test_items_are_deterministic_and_use_probe_seeds_only(make) -> None:
    first, again = make(12), make(12)
    assert first == again
    assert [item.seed for item in first] == list(range(PROBE_SEED_BASE, PROBE_SEED_BASE + 12))
    assert make(5) == first[:5]  # item i does not depend on n
    assert len({item.prompt for item in first}) == 12
    assert all(item.answer in item.prompt for item in first)


def test_invented_names_are_no_known_word() -> None:
    items = coined_items(64)
    words = known_words()
    assert {"apple", "basket", "lookup"} <= words  # the lists it checks against are loaded
    assert all(item.answer.lower() not in words and item.answer.isalpha() for item in items)
    assert len({item.answer for item in items}) >= 60


def test_digit_strings_span_the_lengths() -> None:
    lengths = {len(item.answer) for item in digit_items(200)}
    assert min(lengths) == DIGIT_LENGTHS[0] and max(lengths) == DIGIT_LENGTHS[1]
    assert all(item.answer.isdigit() for item in digit_items(20))


@pytest.mark.parametrize(("distance", "bucket"), [(0, "0-1"), (1, "0-1"), (2, "2-4"), (4, "2-4"), (5, "5-9"),
                                                  (9, "5-9"), (10, "10+"), (15, "10+")])
def test_distance_buckets(distance: int, bucket: str) -> None:
    assert distance_bucket(distance) == bucket


def test_kv_distance_is_the_pairs_between_the_asked_one_and_the_question() -> None:
    items = kv_items(16)
    assert [item.meta["bucket"] for item in items[:4]] == ["0-1", "2-4", "5-9", "10+"]
    for item in items:
        lines = item.prompt.splitlines()
        pairs = [line.split(": ") for line in lines[1:-1]]
        assert len(pairs) == KV_PAIRS
        asked = lines[-1].split("code for ")[1].split("?")[0]
        keys = [k for k, _ in pairs]
        assert keys.count(asked) == 1
        index = keys.index(asked)
        assert pairs[index][1] == item.answer
        assert item.meta["distance"] == KV_PAIRS - 1 - index
        assert distance_bucket(item.meta["distance"]) == item.meta["bucket"]
    with pytest.raises(ValueError, match="pairs"):
        kv_items(1, pairs=8)
