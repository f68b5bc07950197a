"""`common_prefix_len` (engine/base.py) against a token-by-token reference: lists and tuples,
mixed, empty, mismatches inside and at the edges of its 256-token blocks."""

from __future__ import annotations

import random

from forgerl.engine.base import common_prefix_len


def reference(a, b) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def test_matches_the_token_by_token_reference():
    rng = random.Random(0)
    for _ in range(400):
        shared = rng.choice([0, 1, 255, 256, 257, 511, 512, 513, rng.randrange(0, 3000)])
        base = [rng.randrange(50) for _ in range(shared)]
        a = base + [rng.randrange(50) for _ in range(rng.randrange(0, 400))]
        b = base + [rng.randrange(50) for _ in range(rng.randrange(0, 400))]
        for x, y in ((a, b), (tuple(a), tuple(b)), (a, tuple(b)), (a[:0], b)):
            assert common_prefix_len(x, y) == reference(x, y)
