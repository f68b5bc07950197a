"""Fixed-size suites as task families: split the items into training and held-out ones, for good.

A procedural generator can draw fresh tasks for any seed; a benchmark of 200 fixed problems cannot.
A family over it that picks `problems[seed % n]` evaluates on the very items it trained on, and
nothing complains: the held-out curve just looks good. So a fixed suite splits its items once, by a
hash of each item's key (the way bfcl splits its categories): the split never depends on the order
of the items, on a seed or on which other items exist, so adding items never moves an old one
across. `FixedSuite.item(seed)` then draws training items for the trainer's training seeds and
held-out items for its held-out seeds (from HELD_OUT_SEED_BASE on; train/rollouts.py).

```python
suite = FixedSuite(load_problems(), key=lambda p: p["id"], salt="my-bench")
def sample_task(seed: int) -> Task:
    return task_from(suite.item(seed))
```
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from forgerl.errors import ConfigError

__all__ = ["HELD_OUT_SEED_BASE", "FixedSuite", "Split", "is_held_out", "is_held_out_seed", "split_items"]

T = TypeVar("T")

HELD_OUT_SEED_BASE = 10_000_000
"""The trainer's held-out seed range starts here (= train/rollouts.py's and bfcl's constant)."""


def is_held_out_seed(seed: int) -> bool:
    """True for the seeds the trainer (and `forgerl eval`) evaluates on."""
    return seed >= HELD_OUT_SEED_BASE


def _check_fraction(held_out_fraction: float) -> None:
    if not 0.0 < held_out_fraction < 1.0:
        raise ConfigError(f"held_out_fraction must be between 0 and 1 (exclusive), got {held_out_fraction}")


def is_held_out(key: str, *, salt: str, held_out_fraction: float = 0.2) -> bool:
    """Whether the item with this key is held out: the first 8 bytes of sha256(salt, key) as a
    fraction of 2**64, below `held_out_fraction`. The salt keeps two suites' splits independent."""
    _check_fraction(held_out_fraction)
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < held_out_fraction


@dataclass(frozen=True)
class Split(Generic[T]):
    """Disjoint training and held-out items, each in the suite's own order."""

    train: list[T]
    held_out: list[T]


def split_items(items: Sequence[T], key: Callable[[T], str], *, held_out_fraction: float = 0.2,
                salt: str) -> Split[T]:
    """Split `items` by a hash of `key(item)` (see `is_held_out`). Items with equal keys land on
    the same side. Raises ConfigError when a side comes out empty (a suite too small for the
    fraction: raise the fraction, or hold items out by hand)."""
    _check_fraction(held_out_fraction)
    train: list[T] = []
    held_out: list[T] = []
    for item in items:
        item_key = key(item)
        if not isinstance(item_key, str):
            raise ConfigError(f"split key must be a string (an item id), got {type(item_key).__name__}")
        (held_out if is_held_out(item_key, salt=salt, held_out_fraction=held_out_fraction) else train).append(item)
    if not train or not held_out:
        side = "training" if not train else "held-out"
        raise ConfigError(f"splitting {len(items)} items with held_out_fraction={held_out_fraction} (salt {salt!r}) "
                          f"left no {side} items; use more items or another held_out_fraction")
    return Split(train=train, held_out=held_out)


class FixedSuite(Generic[T]):
    """A fixed list of items drawn by seed: training seeds see only training items, held-out seeds
    only held-out items, so the trainer's held-out reward is measured on items it never trained on."""

    def __init__(self, items: Sequence[T], key: Callable[[T], str], *, held_out_fraction: float = 0.2,
                 salt: str) -> None:
        self.split = split_items(items, key, held_out_fraction=held_out_fraction, salt=salt)

    def items_for(self, seed: int) -> list[T]:
        """The side of the split that `seed` draws from."""
        return self.split.held_out if is_held_out_seed(seed) else self.split.train

    def item(self, seed: int) -> T:
        """The item for `seed`: seeds cycle through their side of the split in order."""
        items = self.items_for(seed)
        offset = seed - HELD_OUT_SEED_BASE if is_held_out_seed(seed) else seed
        return items[offset % len(items)]
