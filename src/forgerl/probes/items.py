"""The probes' generated items: invented names, digit strings, key/value lists.

Every item comes from its own seed, `PROBE_SEED_BASE + i`, drawn in a stream named after the probe,
so item i of a probe is the same on every run and machine (Python's `random.Random` seeded with a
string is stable across versions) and no two probes share a stream. Seeds below `PROBE_SEED_BASE`
are refused: they belong to training data (the pre-training corpus draws its seeds from 0 upwards,
held-out tasks start at 10**7, evolve's validation split at 1.01e9), and a probe task that training
could have seen would measure memory, not reading.

Invented names are built from syllables and rejected when they are a word of a list the project
uses (tool-reasoning's items and people, the naming perturbation's synonyms and prefixes, the
project tokenizer's vocabulary), so a policy cannot write one from memory: it has to copy it.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field
from typing import Any

PROBE_SEED_BASE = 2_000_000_000
"""First seed of every probe item: above every other seed base in the project (held-out tasks 1e7,
evolve validation 1.01e9); training corpora must stay below it."""

ONSETS = ("b", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
          "br", "dr", "gl", "kr", "pl", "st", "tr", "sk")
VOWELS = ("a", "e", "i", "o", "u")
CODAS = ("", "", "", "n", "r", "l", "s", "k", "m", "x")
"""25 onsets x 5 vowels x 10 codas: 2-3 syllable names number in the billions."""

DIGIT_LENGTHS = (4, 16)
"""Shortest and longest digit string of the digit-copy probe (inclusive)."""
KV_PAIRS = 16
"""Key/value pairs listed in one lookup prompt: enough for a 10+ distance bucket."""
DISTANCE_BUCKETS: tuple[tuple[str, int, int], ...] = (("0-1", 0, 1), ("2-4", 2, 4), ("5-9", 5, 9), ("10+", 10, 10**9))
"""(label, lowest, highest) pairs between the queried pair and the question."""


@dataclass(frozen=True)
class ProbeItem:
    """One question: the user's message, the exact reply that scores, and what it tests."""

    seed: int
    prompt: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)


def probe_rng(probe: str, seed: int) -> random.Random:
    """The random stream of item `seed` of `probe`; a seed below PROBE_SEED_BASE is refused."""
    if seed < PROBE_SEED_BASE:
        raise ValueError(f"probe seeds start at PROBE_SEED_BASE={PROBE_SEED_BASE}, got {seed}: "
                         "lower seeds belong to training data")
    return random.Random(f"forgerl-probe/{probe}/{seed}")


def item_seeds(n: int) -> range:
    if n < 1:
        raise ValueError(f"n must be >= 1 items, got {n}")
    return range(PROBE_SEED_BASE, PROBE_SEED_BASE + n)


@functools.cache
def known_words() -> frozenset[str]:
    """Lower-case words of the lists the project uses; an invented name must be none of them."""
    from forgerl.envs.tool_reasoning import ITEMS, PEOPLE, TABLES  # heavy: the environment stack (pydantic)
    from forgerl.model.tokenizer import load_default_tokenizer  # heavy: transformers
    from forgerl.perturb.naming import PREFIXES, SYNONYMS  # heavy: with the two above

    words = {*ITEMS, *PEOPLE, *TABLES, *SYNONYMS, *(w for ws in SYNONYMS.values() for w in ws),
             *(p.strip("_") for p in PREFIXES)}
    vocab = load_default_tokenizer().get_vocab()
    words.update(token.replace("Ġ", "").lower() for token in vocab)
    return frozenset(words)


def coined_word(rng: random.Random, syllables: tuple[int, int] = (2, 3)) -> str:
    """A pronounceable invented word of lower-case letters that is not a known word."""
    while True:
        word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS)
                       for _ in range(rng.randint(*syllables)))
        if word not in known_words():
            return word


def coined_items(n: int) -> list[ProbeItem]:
    """Probe 1: a name defined in the prompt, to be repeated exactly (capitalised, as a name is)."""
    items = []
    for seed in item_seeds(n):
        rng = probe_rng("coined", seed)
        name = coined_word(rng).capitalize()
        thing = rng.choice(("project", "tool", "city", "robot", "river", "team"))
        prompt = f"The new {thing} is called {name}. What is the {thing} called? Reply with the name only."
        items.append(ProbeItem(seed, prompt, name, {"thing": thing}))
    return items


def digit_items(n: int, lengths: tuple[int, int] = DIGIT_LENGTHS) -> list[ProbeItem]:
    """Probe 2: a random digit string (leading zeros allowed) to copy exactly."""
    items = []
    for seed in item_seeds(n):
        rng = probe_rng("digits", seed)
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(*lengths)))
        prompt = f"Copy this digit string exactly: {digits}\nReply with the digits only."
        items.append(ProbeItem(seed, prompt, digits, {"length": len(digits)}))
    return items


def distance_bucket(distance: int) -> str:
    """The label of the bucket holding `distance` (pairs between the queried one and the question)."""
    for label, low, high in DISTANCE_BUCKETS:
        if low <= distance <= high:
            return label
    raise ValueError(f"distance must be >= 0, got {distance}")


def kv_items(n: int, pairs: int = KV_PAIRS) -> list[ProbeItem]:
    """Probe 3: `pairs` invented keys with 3-digit codes, one key asked. Item i queries a pair in
    bucket i mod 4 (a distance drawn inside it), so every bucket gets a quarter of the items."""
    if pairs < DISTANCE_BUCKETS[-1][1] + 1:
        raise ValueError(f"pairs must be >= {DISTANCE_BUCKETS[-1][1] + 1} to fill every distance bucket, got {pairs}")
    items = []
    for i, seed in enumerate(item_seeds(n)):
        rng = probe_rng("kv", seed)
        keys: list[str] = []
        while len(keys) < pairs:
            key = coined_word(rng)
            if key not in keys:
                keys.append(key)
        values = [str(v) for v in rng.sample(range(100, 1000), pairs)]
        _, low, high = DISTANCE_BUCKETS[i % len(DISTANCE_BUCKETS)]
        distance = rng.randint(low, min(high, pairs - 1))
        asked = pairs - 1 - distance
        listing = "\n".join(f"{k}: {v}" for k, v in zip(keys, values, strict=True))
        prompt = (f"Here are the codes:\n{listing}\nWhat is the code for {keys[asked]}? Reply with the code only.")
        items.append(ProbeItem(seed, prompt, values[asked], {"distance": distance, "bucket": distance_bucket(distance)}))
    return items
