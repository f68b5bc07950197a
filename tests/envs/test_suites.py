"""Fixed-size suites: hashed, stable, disjoint splits, and seeds that never cross them."""

from __future__ import annotations

import random

import pytest

from forgerl.envs.suites import HELD_OUT_SEED_BASE, FixedSuite, is_held_out, split_items
from forgerl.errors import ConfigError

ITEMS = [{"id": f"problem-{i:03d}", "q": i} for i in range(200)]


def key(item: dict) -> str:
    return item["id"]


def test_split_is_disjoint_complete_and_near_the_fraction():
    split = split_items(ITEMS, key, held_out_fraction=0.2, salt="bench")
    train_ids, held_ids = {key(i) for i in split.train}, {key(i) for i in split.held_out}
    assert not train_ids & held_ids and train_ids | held_ids == {key(i) for i in ITEMS}
    assert 25 <= len(held_ids) <= 55  # 20% of 200, binomial spread


def test_split_does_not_depend_on_order_or_on_other_items():
    split = split_items(ITEMS, key, salt="bench")
    shuffled = ITEMS[:]
    random.Random(0).shuffle(shuffled)
    grown = shuffled + [{"id": f"new-{i}"} for i in range(50)]
    held = {key(i) for i in split.held_out}
    assert {key(i) for i in split_items(shuffled, key, salt="bench").held_out} == held
    assert {key(i) for i in split_items(grown, key, salt="bench").held_out} & {key(i) for i in ITEMS} == held


def test_salt_gives_an_independent_split():
    a = {key(i) for i in split_items(ITEMS, key, salt="a").held_out}
    b = {key(i) for i in split_items(ITEMS, key, salt="b").held_out}
    assert a != b


def test_training_seeds_never_draw_a_held_out_item():
    """The bug this prevents: `problems[seed % n]` evaluates on training items."""
    suite = FixedSuite(ITEMS, key, salt="bench")
    held = {key(i) for i in suite.split.held_out}
    train = {key(suite.item(seed)) for seed in range(5000)}
    evaluated = {key(suite.item(HELD_OUT_SEED_BASE + seed)) for seed in range(5000)}
    assert not train & held
    assert evaluated == held  # every held-out item is reachable, and only those
    assert train == {key(i) for i in suite.split.train}
    assert all(is_held_out(k, salt="bench") for k in evaluated)


def test_held_out_seed_base_matches_the_trainer():
    from forgerl.envs.bfcl import HELD_OUT_SEED_BASE as bfcl_base
    from forgerl.train.rollouts import HELD_OUT_SEED_BASE as trainer_base

    assert HELD_OUT_SEED_BASE == trainer_base == bfcl_base


def test_bad_settings_are_clear_errors():
    with pytest.raises(ConfigError, match="held_out_fraction must be between 0 and 1"):
        split_items(ITEMS, key, held_out_fraction=1.0, salt="x")
    with pytest.raises(ConfigError, match="left no held-out items"):
        split_items(ITEMS[:2], key, held_out_fraction=0.01, salt="x")
    with pytest.raises(ConfigError, match="split key must be a string"):
        split_items(ITEMS, lambda item: item["q"], salt="x")
